"""Server-side command counts: one script call per request, and none for a client denied locally."""

from __future__ import annotations

import threading
import time

import redis
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from ratewarden.enforcer import ApiKeyStore
from ratewarden.enforcer.asgi import RatewardenMiddleware

from .helpers import command_counts, make_enforcer, wait_until


class ClientCommands:
    """Commands clients send (not those scripts run inside), seen through MONITOR."""

    def __init__(self, redis_url: str) -> None:
        self.client = redis.Redis.from_url(redis_url)
        self.lines: list[str] = []

    def __enter__(self) -> ClientCommands:
        self.monitor = self.client.monitor().__enter__()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        time.sleep(0.05)
        return self

    def _read(self) -> None:
        try:
            for event in self.monitor.listen():
                if event.get("client_type") != "lua":
                    self.lines.append(event["command"])
                if event["command"] == "ECHO rw-monitor-stop":
                    return
        except (redis.RedisError, OSError):
            return

    def __exit__(self, *exc: object) -> None:
        self.client.echo("rw-monitor-stop")
        self.thread.join(5)
        self.monitor.__exit__(*exc)
        self.client.close()

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for line in self.lines:
            name = line.split(" ", 1)[0].lower()
            if name != "echo":
                found[name] = found.get(name, 0) + 1
        return found

SECRET = "test-secret-0123456789abcdef"
# the change feed polls the version about twice a second; nothing else may run besides the scripts
BACKGROUND = {"get", "info", "config", "ping", "subscribe", "client", "hello"}


def test_one_script_call_per_request_with_four_rules_and_quotas(redis_sync: redis.Redis, redis_url: str) -> None:
    enforcer = make_enforcer(redis_url, {"tiers": {"anonymous": {}, "paid": {
        "rules": [
            {"name": "per-key", "algorithm": "sliding_window_counter", "limit": 1000, "period": "1m", "scope": ["key"]},
            {"name": "per-ip", "algorithm": "fixed_window", "limit": 1000, "period": "1m", "scope": ["ip"]},
            {"name": "per-key-endpoint", "algorithm": "token_bucket", "limit": 1000, "period": "1s",
             "scope": ["key", "endpoint"]},
            {"name": "in-flight", "algorithm": "gcra", "limit": 1000, "period": "1s", "scope": ["key"]},
        ],
        "quotas": {"daily": 10_000, "monthly": 100_000}}}, "default_tier": "paid"}, api_key_secret=SECRET)
    app = FastAPI()
    app.add_middleware(RatewardenMiddleware, enforcer=enforcer)
    app.get("/v1/items/{item_id}")(lambda item_id: {"id": item_id})
    api_key, _ = ApiKeyStore(redis_sync, SECRET.encode()).create(owner="acme", tier="paid")
    headers = {"Authorization": f"Bearer {api_key}"}
    with TestClient(app) as client:
        client.get("/v1/items/0", headers=headers)  # warm: the key's record is cached from now on
        with ClientCommands(redis_url) as sent:
            responses = [client.get(f"/v1/items/{i}", headers=headers) for i in range(1, 101)]
    assert all(r.status_code == 200 for r in responses)
    assert responses[-1].headers["ratelimit-policy"].count(";q=") == 6  # 4 rules + 2 quotas applied
    counts = sent.counts()
    assert counts.get("evalsha") == 100, counts
    others = {name: n for name, n in counts.items() if name not in BACKGROUND and name != "evalsha"}
    assert others == {}, others
    assert counts.get("get", 0) <= 10  # version polls only, not one per request


def test_a_denied_client_is_answered_locally_until_its_retry_after(redis_sync: redis.Redis, redis_url: str) -> None:
    enforcer = make_enforcer(redis_url, {"tiers": {"free": {}, "anonymous": {"rules": [
        {"name": "r", "algorithm": "fixed_window", "limit": 5, "period": "3s", "scope": ["ip"]}]}}})
    # the script clock starts 0.1 s into a window, so no window ends while the test hammers
    now = time.time()
    enforcer.clock_offset_s = (now // 3 + 1) * 3 + 0.1 - now
    app = FastAPI()
    app.add_middleware(RatewardenMiddleware, enforcer=enforcer)
    app.get("/x")(lambda: {"ok": True})
    with TestClient(app, client=("192.0.2.1", 1)) as client:
        redis_sync.config_resetstat()
        statuses = [client.get("/x").status_code for _ in range(5)]
        first_denial = client.get("/x")
        assert statuses == [200] * 5 and first_denial.status_code == 429
        retry_after = int(first_denial.headers["retry-after"])
        assert 2 <= retry_after <= 3
        scripts_so_far = command_counts(redis_sync)["evalsha"]
        hammered = [client.get("/x") for _ in range(200)]
        scripts_after = command_counts(redis_sync)["evalsha"]
        assert all(r.status_code == 429 for r in hammered)
        assert all(int(r.headers["retry-after"]) <= retry_after for r in hammered)
        assert scripts_after == scripts_so_far  # 200 denials, no Redis command
        time.sleep(max(0.0, 3.0 - (time.time() - now)))  # past the window (and the local denial)
        time.sleep(0.2)
        assert client.get("/x").status_code == 200  # Redis decides again, and admits
        assert command_counts(redis_sync)["evalsha"] == scripts_after + 1


def test_still_one_script_call_per_request_with_shadow_capacity_response_aware_rules_and_anchors(
        redis_sync: redis.Redis, redis_url: str) -> None:
    enforcer = make_enforcer(redis_url, {
        "tiers": {"anonymous": {}, "paid": {
            "rules": [
                {"name": "per-key", "algorithm": "sliding_window_counter", "limit": 1000, "period": "1m",
                 "scope": ["key"]},
                {"name": "strict", "algorithm": "fixed_window", "limit": 50, "period": "1h", "scope": ["key"],
                 "shadow": True},
                {"name": "failures", "algorithm": "sliding_window_log", "limit": 100, "period": "15m", "scope": ["ip"],
                 "count_statuses": [401, 403]},
                {"name": "refunded", "algorithm": "gcra", "limit": 1000, "period": "1s", "scope": ["key"],
                 "refund_statuses": ["5xx"]},
            ],
            "quotas": {"daily": 10_000, "monthly": 100_000, "billing_anchor_day": 31}}},
        "default_tier": "paid",
        "capacity": [{"name": "items", "endpoints": ["GET /v1/items/{item_id}"], "limit": 100_000,
                      "shares": {"paid": 0.6}}],
    }, api_key_secret=SECRET, shadow_headers=True)
    app = FastAPI()
    app.add_middleware(RatewardenMiddleware, enforcer=enforcer)

    @app.get("/v1/items/{item_id}")
    def item(item_id: int) -> JSONResponse:
        return JSONResponse({"id": item_id}, status_code=401 if item_id > 1000 else 200)

    api_key, _ = ApiKeyStore(redis_sync, SECRET.encode()).create(owner="acme", tier="paid")
    headers = {"Authorization": f"Bearer {api_key}"}
    with TestClient(app, client=("192.0.2.9", 1)) as client:
        client.get("/v1/items/0", headers=headers)  # warm: the key's record is cached from now on
        with ClientCommands(redis_url) as sent:
            responses = [client.get(f"/v1/items/{i}", headers=headers) for i in range(1, 101)]
        with ClientCommands(redis_url) as settled:
            failures = [client.get(f"/v1/items/{i}", headers=headers) for i in range(1001, 1011)]
            wait_until(lambda: redis_sync.zcard("rw:{ip:192.0.2.9}:failures:swl") == 10, 2.0,
                       "failures counted after the responses")
    assert all(r.status_code == 200 for r in responses)
    assert responses[-1].headers["x-ratewarden-shadow"].startswith('"strict";')  # would deny past 50
    # the shadow rule and the shared capacity are not the client's limits: 3 rules + 2 quotas listed
    assert responses[-1].headers["ratelimit-policy"].count(";q=") == 5
    counts = sent.counts()
    assert counts.get("evalsha") == 100, counts
    others = {name: n for name, n in counts.items() if name not in BACKGROUND and name != "evalsha"}
    assert others == {}, others
    # a response that counts (401 toward 'failures') adds one call, sent after the response, unawaited
    assert [r.status_code for r in failures] == [401] * 10
    assert settled.counts().get("evalsha") == 20
    assert len(redis_sync.zrange("rw:{ip:192.0.2.9}:failures:swl", 0, -1)) == 10
