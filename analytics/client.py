"""ClickHouse clients: a server over HTTP (``http://host:8123``) or embedded chDB (``chdb:///abs/dir``)."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from ratewarden.extras import MissingExtra, require

try:
    import clickhouse_connect
    from clickhouse_connect.driver.client import Client
except ModuleNotFoundError as exc:
    raise MissingExtra("analytics", "ratewarden.analytics", [str(exc.name)]) from None

if TYPE_CHECKING:
    from clickhouse_connect.driver.query import QueryResult
    from clickhouse_connect.driver.summary import QuerySummary

__all__ = ["ClickHouse", "ClickHouseCredentials", "connect", "default_url", "Serialized", "where"]

DEFAULT_CHDB_DIR = Path("var/clickhouse")


def default_url() -> str:
    """``RATEWARDEN_CLICKHOUSE_URL`` if set, else embedded chDB under ``var/clickhouse``.

    chDB allows one engine and one data directory per process: a second process on the
    same directory fails with "Cannot lock file".
    """
    return os.environ.get("RATEWARDEN_CLICKHOUSE_URL") or f"chdb://{DEFAULT_CHDB_DIR.resolve()}"


class ClickHouseCredentials(BaseSettings):
    """Who a ClickHouse server is asked as: ``RATEWARDEN_CLICKHOUSE_USER`` and
    ``RATEWARDEN_CLICKHOUSE_PASSWORD``, kept apart from the URL so that a password needs no
    escaping (``@``, ``:`` or ``/`` in it would break a ``user:password@`` URL). Either one set
    here wins over the URL's; unset, the URL's (or ClickHouse's default user) is used."""

    model_config = SettingsConfigDict(env_prefix="RATEWARDEN_CLICKHOUSE_", extra="ignore")

    user: str | None = Field(None, description="ClickHouse user (unset or empty: the URL's, else 'default')")
    password: SecretStr | None = Field(None, description="its password (unset or empty: the URL's, else none)")


def connect(url: str | None = None, credentials: ClickHouseCredentials | None = None) -> Client:
    """A clickhouse-connect client for ``url`` (same API for HTTP servers and chDB); a server is
    asked as ``credentials`` (default: from the environment)."""
    url = url or default_url()
    if url.startswith("chdb://"):
        require("local", "chdb", feature=f"embedded ClickHouse ({url})")
        Path(url.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
        return clickhouse_connect.get_client(dsn=url)
    credentials = credentials or ClickHouseCredentials()
    password = credentials.password.get_secret_value() if credentials.password else ""
    return clickhouse_connect.get_client(dsn=url, username=credentials.user, password=password)  # unset: the URL's


def where(url: str) -> str:
    """Where ``url`` points, for logs (no credentials): ``host:port``, or ``chdb <dir>``."""
    if url.startswith("chdb://"):
        return "chdb " + url.removeprefix("chdb://")
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or (8443 if parts.scheme == 'https' else 8123)}"


class ClickHouse(Protocol):
    """The calls ratewarden makes on ClickHouse: met by a clickhouse-connect ``Client`` and by ``Serialized``."""

    def query(self, query: str, parameters: dict[str, Any] | None = None,
              settings: dict[str, Any] | None = None) -> QueryResult: ...

    def insert(self, table: str, data: Sequence[Sequence[Any]], *, column_names: Sequence[str],
               settings: dict[str, Any] | None = None) -> QuerySummary: ...

    def command(self, cmd: str) -> str | int | Sequence[str] | QuerySummary: ...


class Serialized:
    """A client whose calls run one at a time, for sharing one (chDB) client between threads,
    e.g. the stream worker's writes and the admin API it serves in embedded mode."""

    def __init__(self, client: ClickHouse) -> None:
        self._client = client
        self._lock = threading.RLock()

    def query(self, query: str, parameters: dict[str, Any] | None = None,
              settings: dict[str, Any] | None = None) -> QueryResult:
        with self._lock:
            return self._client.query(query, parameters, settings)

    def insert(self, table: str, data: Sequence[Sequence[Any]], *, column_names: Sequence[str],
               settings: dict[str, Any] | None = None) -> QuerySummary:
        with self._lock:
            return self._client.insert(table, data, column_names=column_names, settings=settings)

    def command(self, cmd: str) -> str | int | Sequence[str] | QuerySummary:
        with self._lock:
            return self._client.command(cmd)
