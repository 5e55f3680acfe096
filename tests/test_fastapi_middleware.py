"""The ASGI middleware through FastAPI's test client: headers, 429 bodies, exemptions,
per-route limits, API-key tiers, trusted proxies, and Redis outages (open and closed)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ratewarden.enforcer import ApiKeyStore, Enforcer, EnforcerSettings, load_policy
from ratewarden.enforcer.asgi import RatewardenMiddleware, limit
from ratewarden.examples.demo_fastapi.app import POLICY_FILE, create_app
from ratewarden.local import RedisServer

from .helpers import make_enforcer

SECRET = "test-secret-0123456789abcdef"


def demo_client(redis_url: str, ip: str = "203.0.113.9", **settings: object) -> TestClient:
    enforcer = Enforcer(load_policy(POLICY_FILE), EnforcerSettings(redis_url=redis_url, api_key_secret=SECRET,
                                                                   redis_budget_ms=2000, **settings))
    return TestClient(create_app(enforcer), client=(ip, 50000))


def test_allowed_responses_carry_draft_and_legacy_headers(redis_sync: redis.Redis, redis_url: str) -> None:
    with demo_client(redis_url) as client:
        response = client.get("/v1/items")
    assert response.status_code == 200
    assert response.headers["ratelimit-policy"] == '"per-ip";q=60;w=60, "daily";q=2000;w=86400'
    assert response.headers["ratelimit"].startswith('"per-ip";r=59;t=')
    assert response.headers["x-ratelimit-limit"] == "60"
    assert response.headers["x-ratelimit-remaining"] == "59"
    assert 0 <= int(response.headers["x-ratelimit-reset"]) <= 60
    assert "retry-after" not in response.headers


def test_anonymous_callers_get_60_per_minute_then_problem_json(redis_sync: redis.Redis, redis_url: str) -> None:
    with demo_client(redis_url) as client:
        statuses = [client.get("/v1/items").status_code for _ in range(60)]
        denied = client.get("/v1/items")
    assert statuses == [200] * 60
    assert denied.status_code == 429
    assert denied.headers["content-type"] == "application/problem+json"
    assert 1 <= int(denied.headers["retry-after"]) <= 61  # a sliding window counter may need period + period/limit
    assert denied.headers["ratelimit"].startswith('"per-ip";r=0;t=')
    body = denied.json()
    assert body["type"] == "urn:ratewarden:problem:rate-limited"
    assert body["status"] == 429 and body["policy"] == "per-ip" and body["kind"] == "rate"
    assert body["retry_after"] == int(denied.headers["retry-after"])


def test_quota_exhaustion_is_distinguishable_from_a_rate_limit(redis_sync: redis.Redis, redis_url: str) -> None:
    enforcer = make_enforcer(redis_url, {"tiers": {"anonymous": {"quotas": {"daily": 1}}, "free": {}}})
    app = FastAPI()
    app.add_middleware(RatewardenMiddleware, enforcer=enforcer)
    app.get("/q")(lambda: {"ok": True})
    with TestClient(app) as client:
        assert client.get("/q").status_code == 200
        response = client.get("/q")
    assert response.status_code == 429
    assert response.json()["type"] == "urn:ratewarden:problem:quota-exhausted"
    assert response.json()["kind"] == "quota" and response.json()["policy"] == "daily"


def test_exempt_and_unmatched_routes(redis_sync: redis.Redis, redis_url: str) -> None:
    with demo_client(redis_url) as client:
        health = client.get("/healthz")
        missing = client.get("/no/such/route")
    assert health.status_code == 200 and "ratelimit" not in health.headers
    assert missing.status_code == 404 and "ratelimit" in missing.headers  # scanners are counted too


def test_route_templates_not_raw_paths_and_costs(redis_sync: redis.Redis, redis_url: str) -> None:
    with demo_client(redis_url) as client:
        items = [client.get(f"/v1/items/{i}") for i in (1, 2, 5000)]
        search = client.get("/v1/search")
    assert [r.status_code for r in items] == [200, 200, 404]
    assert [r.headers["x-ratelimit-remaining"] for r in items] == ["59", "58", "57"]
    assert search.headers["x-ratelimit-remaining"] == "52"  # cost 5


def test_api_key_selects_tier_and_login_rule(redis_sync: redis.Redis, redis_url: str) -> None:
    api_key, record = ApiKeyStore(redis_sync, SECRET.encode()).create(owner="acme", tier="paid")
    with demo_client(redis_url) as client:
        response = client.get("/v1/items", headers={"Authorization": f"Bearer {api_key}"})
        login = client.post("/v1/login", json={"username": "a", "password": "nope"},
                            headers={"Authorization": f"Bearer {api_key}"})
    assert response.status_code == 200
    assert '"burst";q=50;w=1' in response.headers["ratelimit-policy"]
    assert login.status_code == 401 and '"login-per-ip";q=20;w=60' in login.headers["ratelimit-policy"]


def test_forwarded_for_is_believed_only_from_trusted_proxies(redis_sync: redis.Redis, redis_url: str) -> None:
    with demo_client(redis_url, ip="10.0.0.5", trusted_proxies=["10.0.0.0/8"]) as client:
        for _ in range(60):
            assert client.get("/v1/items", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 200
        assert client.get("/v1/items", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 429
        # a client rotating what it puts left of the real hop does not become someone else
        spoofed = client.get("/v1/items", headers={"X-Forwarded-For": "1.2.3.4, 198.51.100.1"})
        assert spoofed.status_code == 429
        assert client.get("/v1/items", headers={"X-Forwarded-For": "198.51.100.2"}).status_code == 200
    with demo_client(redis_url, ip="198.51.100.99") as untrusted:  # no trusted proxies: header ignored
        for _ in range(60):
            untrusted.get("/v1/items", headers={"X-Forwarded-For": f"192.0.2.{_}"})
        assert untrusted.get("/v1/items", headers={"X-Forwarded-For": "192.0.2.200"}).status_code == 429


def test_per_route_limits_from_the_decorator(redis_sync: redis.Redis, redis_url: str) -> None:
    enforcer = make_enforcer(redis_url, {"tiers": {"anonymous": {}, "free": {}}})
    app = FastAPI()
    app.add_middleware(RatewardenMiddleware, enforcer=enforcer)

    @app.get("/expensive")
    @limit({"name": "expensive", "algorithm": "gcra", "limit": 2, "period": "1h", "scope": ["ip", "endpoint"]})
    async def expensive() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/free-for-all")
    @limit(exempt=True)
    async def free_for_all() -> dict[str, bool]:
        return {"ok": True}

    with TestClient(app) as client:
        assert [client.get("/expensive").status_code for _ in range(3)] == [200, 200, 429]
        assert client.get("/free-for-all").status_code == 200
        assert "ratelimit" not in client.get("/free-for-all").headers


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def _outage_app(url: str, fail_mode: str) -> TestClient:
    enforcer = make_enforcer(url, {"tiers": {"anonymous": {"fail_mode": fail_mode, "rules": [
        {"name": "r", "algorithm": "fixed_window", "limit": 3, "period": "1h", "scope": ["ip"]}]}, "free": {}}},
        redis_budget_ms=50, redis_retry_after_s=0.2)
    app = FastAPI()
    app.add_middleware(RatewardenMiddleware, enforcer=enforcer)
    app.get("/x")(lambda: {"ok": True})
    return TestClient(app)


def _until_recovered(client: TestClient, expect: int) -> None:
    deadline = time.monotonic() + 10
    while client.get("/x").status_code != expect:
        assert time.monotonic() < deadline, "did not recover"
        time.sleep(0.05)


def test_redis_outage_fail_open_uses_local_limits_and_recovers(own_redis: RedisServer) -> None:
    with _outage_app(own_redis.url, "open") as client:
        assert client.get("/x").status_code == 200
        own_redis.kill()
        during = [client.get("/x") for _ in range(5)]
        # degraded, not broken: the in-process fallback still limits (3 per hour here)
        assert [r.status_code for r in during] == [200, 200, 200, 429, 429]
        own_redis.restart()
        _until_recovered(client, 200)  # the restarted server starts empty: Redis decides again
        assert [client.get("/x").status_code for _ in range(3)] == [200, 200, 429]


def test_redis_outage_fail_closed_answers_503(own_redis: RedisServer) -> None:
    with _outage_app(own_redis.url, "closed") as client:
        assert client.get("/x").status_code == 200
        own_redis.kill()
        response = client.get("/x")
        assert response.status_code == 503
        assert response.json()["type"] == "urn:ratewarden:problem:limiter-unavailable"
        assert "retry-after" in response.headers
        own_redis.restart()
        _until_recovered(client, 200)


@pytest.mark.parametrize(("setting", "frozen"), [("true", True), ("false", False)])
def test_the_startup_heap_is_frozen_once_the_app_has_started(redis_url: str, setting: str, frozen: bool) -> None:
    """RATEWARDEN_GC_FREEZE: full garbage collections stop walking what the app built at start-up
    (in a child interpreter: freezing is process-wide)."""
    import subprocess
    import sys

    code = ("import gc, json\n"
            "from fastapi.testclient import TestClient\n"
            "from ratewarden.examples.demo_fastapi.app import create_app\n"
            "before = gc.get_freeze_count()\n"
            "with TestClient(create_app()) as client:\n"
            "    during = gc.get_freeze_count()\n"
            "    status = client.get('/v1/items/1').status_code\n"
            "print(json.dumps([before, during, status]))\n")
    env = {"PATH": "/usr/bin:/bin", "RATEWARDEN_REDIS_URL": redis_url, "RATEWARDEN_GC_FREEZE": setting}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    before, during, status = json.loads(result.stdout.strip().splitlines()[-1])
    assert before == 0 and status == 200
    assert (during > 10_000) is frozen, during  # the app, FastAPI, pydantic and the enforcer: tens of thousands
