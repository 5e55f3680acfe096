"""Logs: every record goes through the standard ``logging`` tree (so an application's handlers,
levels and ``logging.disable`` apply), as text or JSON; outages of a reconnect loop are logged
once, then rarely, then recovered, naming the server and the setting and never a password."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import Iterator

import pytest

from ratewarden.enforcer import Enforcer, EnforcerSettings, policy_from_mapping
from ratewarden.enforcer.identity import Identity
from ratewarden.enforcer.logs import get_logger, redact
from ratewarden.enforcer.logsetup import LogSettings, configure_logging
from ratewarden.enforcer.outage import OutageLog
from ratewarden.local import free_port
from ratewarden.stream.delivery import AlertDeliverer
from ratewarden.stream.settings import StreamSettings

from .helpers import PasswordRedis

PASSWORD = "pw-Z9q8w7e6r5t4"
POLICY = {"default_tier": "anonymous",
          "tiers": {"anonymous": {"rules": [{"name": "r", "limit": 1000, "period": "1m", "scope": ["ip"]}]}}}


@pytest.fixture
def root_logging() -> Iterator[None]:
    """configure_logging replaces the root logger's handlers: put pytest's back afterwards (and the
    level the Django demo's LOGGING gives the ratewarden logger, which would override the root's)."""
    root, ours = logging.getLogger(), logging.getLogger("ratewarden")
    handlers, level, our_level = list(root.handlers), root.level, ours.level
    ours.setLevel(logging.NOTSET)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    ours.setLevel(our_level)
    logging.disable(logging.NOTSET)


def _feed_lines(caplog: pytest.LogCaptureFixture, prefix: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", "").startswith(prefix)]


def test_enforcer_records_reach_a_logging_handler_naming_server_and_setting(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()  # nothing listens there
    url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"

    async def run() -> None:
        enforcer = Enforcer(policy_from_mapping(POLICY), EnforcerSettings(redis_url=url, redis_budget_ms=200))
        await enforcer.start()
        for _ in range(5):
            await enforcer.decide(Identity("ip:192.0.2.1", "anonymous", "192.0.2.1"), "GET /")
        await enforcer.aclose()

    with caplog.at_level(logging.INFO, logger="ratewarden"):
        asyncio.run(run())
    [down] = [r for r in caplog.records if getattr(r, "event", None) == "redis_unavailable"]
    assert down.name == "ratewarden.enforcer" and down.levelno == logging.WARNING
    assert down.fields["server"].startswith(f"127.0.0.1:{port}") and down.fields["setting"] == "RATEWARDEN_REDIS_URL"
    assert "ConnectionError" in down.fields["error"]
    assert PASSWORD not in caplog.text


def test_stream_records_reach_a_logging_handler(caplog: pytest.LogCaptureFixture) -> None:
    hook = f"http://127.0.0.1:{free_port()}/hooks/T000/B000/{PASSWORD}"
    deliverer = AlertDeliverer(StreamSettings(webhook_urls=hook, delivery_timeout_s=0.5))
    alert = {"dedup_key": "k", "version": 1, "client_id": "ip:192.0.2.9", "alert_type": "scraping"}

    async def run() -> None:
        with pytest.raises(TimeoutError):  # retried until accepted: nothing accepts it here
            await asyncio.wait_for(deliverer.deliver(alert), 1.0)
        await deliverer.close()

    with caplog.at_level(logging.INFO, logger="ratewarden"):
        asyncio.run(run())
    [down] = _feed_lines(caplog, "alert_sink_unavailable")
    assert down.name == "ratewarden.delivery"
    assert down.fields["sink"] == "webhook[0]" and down.fields["setting"] == "RATEWARDEN_WEBHOOK_URLS"
    assert PASSWORD not in caplog.text and "/hooks/" not in caplog.text


def test_text_and_json_lines_and_logging_disable(root_logging: None) -> None:
    out = io.StringIO()
    configure_logging(LogSettings(log_format="json", log_level="info"), stream=out)
    log = get_logger("ratewarden.enforcer")
    log.warning("redis_unavailable", server="127.0.0.1:6379", setting="RATEWARDEN_REDIS_URL")
    log.debug("not_at_this_level")
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["event"] == "redis_unavailable" and first["level"] == "warning"
    assert first["server"] == "127.0.0.1:6379" and first["setting"] == "RATEWARDEN_REDIS_URL"
    assert first["logger"] == "ratewarden.enforcer" and first["time"].endswith("Z")
    assert second["event"] == "Started server process [42]" and second["logger"] == "uvicorn.error"

    out = io.StringIO()
    configure_logging(LogSettings(log_format="text", log_level="warning"), stream=out)
    log.info("below_the_level")
    log.warning("kafka_unavailable", server="k:9092")
    assert out.getvalue().endswith("WARNING ratewarden.enforcer kafka_unavailable server=k:9092\n")
    logging.disable(logging.CRITICAL)  # an application silencing everything silences ratewarden too
    log.error("silenced")
    assert "silenced" not in out.getvalue() and "below_the_level" not in out.getvalue()


def test_urls_lose_their_passwords() -> None:
    assert redact(f"redis://:{PASSWORD}@h:6379/0") == "redis://:***@h:6379/0"
    assert redact(f"error at rediss://user:{PASSWORD}@h:1/2, and http://u:p@x/") == \
        "error at rediss://user:***@h:1/2, and http://u:***@x/"
    assert redact("redis://h:6379/0 and ip 10.0.0.1:80") == "redis://h:6379/0 and ip 10.0.0.1:80"


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_60_s_outage_makes_a_handful_of_lines(caplog: pytest.LogCaptureFixture) -> None:
    """The change feed retried twice a second and logged each failure: 120 lines a minute."""
    clock = _Clock()
    outage = OutageLog(get_logger("ratewarden.test"), "change_feed", clock=clock, server="127.0.0.1:6379",
                       setting="RATEWARDEN_REDIS_URL")
    delays = []
    with caplog.at_level(logging.INFO, logger="ratewarden"):
        while clock.now < 1060.0:
            outage.failed(ConnectionError("Connection refused"))
            delays.append(outage.retry_delay())
            clock.now += delays[-1]
        outage.succeeded()
        outage.succeeded()  # up: nothing more
    events = [r.event for r in caplog.records]
    print(f"\n60 s outage, {len(delays)} attempts: {len(events)} log lines: {events}")
    assert events == ["change_feed_unavailable", "change_feed_still_unavailable", "change_feed_still_unavailable",
                      "change_feed_recovered"]  # at 0 s, 10 s, 30 s (then 70 s), and the recovery
    assert caplog.records[-1].fields["down_s"] >= 60 and caplog.records[-1].fields["attempts"] == len(delays)
    assert delays[:4] == [0.5, 1.0, 2.0, 2.0] and max(delays) == 2.0


def test_a_real_redis_outage_is_logged_once_then_recovered(caplog: pytest.LogCaptureFixture) -> None:
    """Valkey stopped for 4 s under a change feed and a stream of decisions, then restarted."""
    server = PasswordRedis(PASSWORD).start()
    url = server.url
    identity = Identity("ip:192.0.2.2", "anonymous", "192.0.2.2")

    async def run() -> None:
        enforcer = Enforcer(policy_from_mapping(POLICY),
                            EnforcerSettings(redis_url=url, redis_budget_ms=500, redis_retry_after_s=0.2))
        await enforcer.start()
        assert (await enforcer.decide(identity, "GET /")).allowed
        server.kill()  # as a crash would: the port stays ours for the restart
        until = time.monotonic() + 4.0
        while time.monotonic() < until:  # decisions keep coming: degraded, and one line for it all
            assert (await enforcer.decide(identity, "GET /")).degraded
            await asyncio.sleep(0.05)
        await asyncio.to_thread(server.start)
        until = time.monotonic() + 15.0
        while not (_feed_lines(caplog, "change_feed_recovered") and _feed_lines(caplog, "redis_recovered")):
            assert time.monotonic() < until, caplog.text
            await enforcer.decide(identity, "GET /")
            await asyncio.sleep(0.05)
        await enforcer.aclose()

    try:
        with caplog.at_level(logging.INFO, logger="ratewarden"):
            asyncio.run(run())
    finally:
        server.stop()
    lines = [r.event for r in caplog.records if r.name.startswith("ratewarden")]
    print(f"\n4 s Redis outage: {len(lines)} log lines: {lines}")
    assert sorted(lines) == ["change_feed_recovered", "change_feed_unavailable", "redis_recovered",
                             "redis_unavailable"]
    assert all(r.fields["server"].startswith(f"127.0.0.1:{server.port}") for r in caplog.records
               if hasattr(r, "fields"))
    assert PASSWORD not in caplog.text


def test_every_event_name_is_snake_case_and_nothing_uses_structlog() -> None:
    """One convention for every log line ratewarden writes, and every line through ``logging``."""
    import ast
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    sources = [p for part in ("enforcer", "stream", "analytics", "dashboards") for p in (root / part).rglob("*.py")]
    sources += [p for p in (root / "ratewarden").glob("*.py")]
    names = []
    for path in sources:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(m.split(".")[0] == "structlog" for m in modules), path
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("debug", "info", "warning", "error", "exception", "critical")
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                names.append((path.name, node.args[0].value))
    print(f"\n{len(names)} log calls with a literal event name in {len(sources)} modules")
    assert len(names) > 20
    assert [(file, name) for file, name in names if not re.fullmatch(r"[a-z][a-z0-9_]*", name)] == []


@pytest.mark.parametrize(("command", "env", "named"), [
    (["admin"], {"RATEWARDEN_ADMIN_TOKEN": "x" * 24, "RATEWARDEN_AUDIT_MAX_ENTRIES": "5"},
     "invalid admin settings: RATEWARDEN_AUDIT_MAX_ENTRIES: "),
    (["admin"], {"RATEWARDEN_ADMIN_TOKEN": "x" * 24, "RATEWARDEN_LOG_LEVEL": "loud"},
     "invalid logging settings: RATEWARDEN_LOG_LEVEL: "),
])
def test_a_bad_setting_of_a_cli_process_exits_2_naming_its_variable(
        command: list[str], env: dict[str, str], named: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from ratewarden.cli import app as cli

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 2, result.output
    assert named in " ".join(result.output.split()), result.output
