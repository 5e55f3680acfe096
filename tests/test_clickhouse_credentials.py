"""RATEWARDEN_CLICKHOUSE_USER / RATEWARDEN_CLICKHOUSE_PASSWORD reach a ClickHouse server as they
are, whatever characters the password has, and win over credentials in the URL: read from the
first request clickhouse-connect makes, by a plain HTTP server on a loopback port."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from ratewarden.analytics.client import ClickHouseCredentials, connect


class _Recorder(BaseHTTPRequestHandler):
    logins: list[tuple[str, str]] = []

    def _answer(self) -> None:
        kind, _, value = (self.headers.get("authorization") or "").partition(" ")
        if kind == "Basic":
            user, _, password = base64.b64decode(value).decode().partition(":")
        else:  # clickhouse-connect may send the X-ClickHouse-User/Key headers instead
            user, password = self.headers.get("x-clickhouse-user", ""), self.headers.get("x-clickhouse-key", "")
        self.logins.append((user, password))
        self.send_response(500)  # enough: the client gives up, the login is recorded
        self.end_headers()

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Recorder.logins = []
    httpd = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


PASSWORD = "p@ss:w/rd?#%"  # every character that breaks a user:password@ URL


def test_credentials_from_the_environment_reach_the_server_intact(server: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATEWARDEN_CLICKHOUSE_USER", "ratewarden")
    monkeypatch.setenv("RATEWARDEN_CLICKHOUSE_PASSWORD", PASSWORD)
    with pytest.raises(DatabaseError):  # the recorder answers 500 to everything
        connect(f"http://{server}")
    assert _Recorder.logins and set(_Recorder.logins) == {("ratewarden", PASSWORD)}


def test_the_settings_win_over_the_url_and_the_url_serves_without_them(server: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RATEWARDEN_CLICKHOUSE_USER", raising=False)
    monkeypatch.delenv("RATEWARDEN_CLICKHOUSE_PASSWORD", raising=False)
    with pytest.raises(DatabaseError):
        connect(f"http://olduser:oldpass@{server}")
    with pytest.raises(DatabaseError):
        connect(f"http://olduser:oldpass@{server}", ClickHouseCredentials(user="ratewarden", password=PASSWORD))
    assert set(_Recorder.logins) == {("olduser", "oldpass"), ("ratewarden", PASSWORD)}
