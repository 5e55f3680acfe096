"""Security checks: admin tokens (missing, wrong, expired; constant-time), no client-chosen
tier or escape from a penalty through headers it controls, and Redis key names that hostile
request data cannot shape."""

from __future__ import annotations

import hmac
import time
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from ratewarden.analytics import tokens as tokens_module
from ratewarden.analytics.admin import AdminSettings, create_admin_app, expiring_token, token_valid
from ratewarden.enforcer import ApiKeyStore, Enforcer, EnforcerSettings, Override, OverrideStore, load_policy
from ratewarden.enforcer.identity import MAX_IDENTITY_LENGTH, bounded
from ratewarden.examples.demo_fastapi.app import POLICY_FILE, create_app

TOKEN = "security-admin-token-0123456789"
SECRET = "test-secret-0123456789abcdef"


def test_expired_wrong_and_forged_admin_tokens_are_refused(clickhouse: Any, redis_url: str) -> None:
    app = create_admin_app(AdminSettings(admin_token=TOKEN, redis_url=redis_url, clickhouse_database="rw_security"),
                           clickhouse)
    fresh, expired = expiring_token(TOKEN, time.time() + 60), expiring_token(TOKEN, time.time() - 1)
    forged = expiring_token("another-admin-token-0123456789", time.time() + 60)
    tampered = fresh.rsplit(".", 1)[0].replace(fresh.split(".")[1], str(int(time.time()) + 10**6)) + "." + \
        fresh.rsplit(".", 1)[1]
    with TestClient(app) as client:
        status = lambda token: client.get("/api/v1/overrides", headers={"authorization": f"Bearer {token}"}).status_code  # noqa: E731
        assert status(TOKEN) == 200 and status(fresh) == 200
        for refused in (expired, forged, tampered, "", "rwat.1.x", TOKEN[:-1], TOKEN + "x"):
            assert status(refused) == 401, refused
        assert client.get("/api/v1/overrides").status_code == 401


def test_token_checks_are_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(tokens_module.hmac, "compare_digest", spy)
    assert not token_valid("guess", TOKEN)
    assert token_valid(expiring_token(TOKEN, time.time() + 5), TOKEN)
    assert compared and all(isinstance(a, bytes) for a, _ in compared)


def demo(redis_url: str, peer: str) -> TestClient:
    enforcer = Enforcer(load_policy(POLICY_FILE), EnforcerSettings(redis_url=redis_url, api_key_secret=SECRET,
                                                                   redis_budget_ms=2000))  # no trusted proxies
    return TestClient(create_app(enforcer), client=(peer, 40000))


def test_headers_a_client_controls_neither_raise_its_tier_nor_lift_a_penalty(redis_sync: redis.Redis,
                                                                             redis_url: str) -> None:
    free_key, record = ApiKeyStore(redis_sync, SECRET.encode()).create("someone", tier="free")
    OverrideStore(redis_sync).set(Override(client_id="ip:203.0.113.90", block=True, source="stream:scraping"))
    OverrideStore(redis_sync).set(Override(client_id=f"k:{record.id}", block=True, source="stream:retry_storm"))
    forged = {"x-forwarded-for": "198.51.100.1", "forwarded": "for=198.51.100.2", "x-real-ip": "198.51.100.3",
              "x-tier": "trusted", "x-ratewarden-tier": "trusted", "x-api-key": "rw_made_up"}
    with demo(redis_url, "203.0.113.90") as client:
        time.sleep(0.6)  # the overrides reach the enforcer's live state
        for extra in ({}, forged, {"authorization": "Bearer rw_not_a_key"}, {"authorization": "Basic x"}):
            response = client.get("/v1/items", headers=extra)
            assert response.status_code == 429 and response.json()["type"].endswith(":blocked"), extra
    with demo(redis_url, "198.51.100.77") as client:
        blocked = client.get("/v1/items", headers={"authorization": f"Bearer {free_key}", **forged})
        assert blocked.status_code == 429  # a new address does not shed the key's penalty
        anonymous = client.get("/v1/items", headers=forged)
        assert anonymous.status_code == 200 and anonymous.headers["ratelimit-policy"].startswith('"per-ip"')


@pytest.mark.parametrize("user", ["a" * 10_000, "x}{y", "{hash-tag}", "name with spaces\r\n", "\x00\x01\x02",
                                  "../../etc/passwd", "*", "key:*:gcra"])
def test_redis_key_names_are_never_shaped_by_request_data(redis_sync: redis.Redis, redis_url: str, user: str) -> None:
    import anyio

    from .helpers import make_enforcer

    policy = {"tiers": {"anonymous": {}, "free": {"rules": [
        {"name": "per-user", "algorithm": "gcra", "limit": 5, "period": "1s", "scope": ["user"]},
        {"name": "per-user-route", "algorithm": "fixed_window", "limit": 5, "period": "1m",
         "scope": ["user", "endpoint"]},
    ]}}}

    async def decide() -> None:
        enforcer = make_enforcer(redis_url, policy)
        await enforcer.start()
        try:
            decision = await enforcer.decide(await enforcer.identify(ip="203.0.113.5", user=user), "GET /v1/items/{id}")
            assert decision.allowed
        finally:
            await enforcer.aclose()

    anyio.run(decide)
    keys = [k.decode("utf-8", "backslashreplace") for k in redis_sync.scan_iter("rw:{*")]
    assert keys, "the rules wrote their counters"
    for key in keys:
        assert len(key) <= 2 * MAX_IDENTITY_LENGTH + 64, key
        tag, rest = key[key.index("{") + 1:key.index("}")], key[key.index("}") + 1:]
        assert tag == f"u:{bounded(user)}", key  # the hash tag: the bounded identity, hashed when hostile
        assert rest in (":per-user:gcra", ":per-user-route:fw:e:GET /v1/items/{id}") or rest.startswith(
            (":per-user:", ":per-user-route:")), key  # the rest: rule names and the app's route template
        if bounded(user) != user:
            assert user not in key
