"""Fair share of an endpoint's capacity by tier, and response-aware counting: limits on
failed logins only, refunds of failed requests. Real Redis, the real middleware."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from typing import Any

import httpx
import pytest
import redis
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from ratewarden.enforcer import ApiKeyStore, EnforcerSettings, policy_from_mapping
from ratewarden.enforcer.asgi import RatewardenMiddleware
from ratewarden.enforcer.engine import SyncEnforcer
from ratewarden.examples.demo_fastapi.app import create_app

from .helpers import make_enforcer, wait_until

pytestmark = pytest.mark.anyio
SECRET = "test-secret-0123456789abcdef"
GENEROUS = [{"name": "per-key", "algorithm": "sliding_window_counter", "limit": 1_000_000, "period": "1m",
             "scope": ["key"]}]
CAPACITY, FREE_SHARE, PAID_SHARE = 100, 0.3, 0.6
FAIR_POLICY = {
    "anonymous_tier": "anonymous",
    "tiers": {"anonymous": {}, "free": {"rules": GENEROUS}, "paid": {"rules": GENEROUS}, "trusted": {}},
    "capacity": [{"name": "search", "endpoints": ["GET /v1/search"], "limit": CAPACITY, "period": "1s",
                  "algorithm": "fixed_window", "shares": {"free": FREE_SHARE, "paid": PAID_SHARE}}],
}


def search_app(enforcer: Any) -> FastAPI:
    app = FastAPI()
    app.add_middleware(RatewardenMiddleware, enforcer=enforcer)
    app.get("/v1/search")(lambda q="": {"results": []})
    return app


async def test_free_floods_search_and_paid_keeps_its_reserved_share(redis_sync: redis.Redis, redis_url: str) -> None:
    """50 free clients send 25 times the capacity; 5 paid clients send 70/s steadily (more than their
    60% share); one trusted client sends 5/s. Two API instances, one virtual clock (deterministic)."""
    store = ApiKeyStore(redis_sync, SECRET.encode())
    keys = {tier: [store.create(f"{tier}-{i}", tier=tier)[0] for i in range(n)]
            for tier, n in (("free", 50), ("paid", 5), ("trusted", 1))}
    clock = [math.floor(time.time()) + 1.0]  # starts on a window boundary
    instances = []
    for _ in range(2):
        enforcer = make_enforcer(redis_url, FAIR_POLICY, api_key_secret=SECRET, time_source="app",
                                 local_deny_cache=False)
        enforcer.clock = lambda: clock[0]
        instances.append(httpx.AsyncClient(transport=httpx.ASGITransport(search_app(enforcer)), base_url="http://api"))
    results: list[tuple[int, str, httpx.Response]] = []  # (window, tier, response)
    tick, windows, start = 0.02, 4, clock[0]

    async def send(n: int, tier: str, key: str) -> None:
        response = await instances[n % 2].get("/v1/search", headers={"authorization": f"Bearer {key}"})
        results.append((int(clock[0] - start), tier, response))

    paid_sent = trusted_sent = 0
    for step in range(int(windows / tick)):
        clock[0] = start + step * tick
        batch = [send(i, "free", key) for i, key in enumerate(keys["free"])]
        for _ in range(math.floor((step + 1) * tick * 70) - paid_sent):  # 70/s, spread over the paid keys
            batch.append(send(paid_sent, "paid", keys["paid"][paid_sent % 5]))
            paid_sent += 1
        if math.floor((step + 1) * tick * 5) > trusted_sent:  # 5/s
            batch.append(send(trusted_sent, "trusted", keys["trusted"][0]))
            trusted_sent += 1
        await asyncio.gather(*batch)
    for instance in instances:
        await instance.aclose()

    admitted = Counter((w, tier) for w, tier, r in results if r.status_code == 200)
    sent = Counter((w, tier) for w, tier, _ in results)
    assert {r.status_code for _, _, r in results} == {200, 429}
    for window in range(windows):
        free, paid, trusted = (admitted[window, tier] for tier in ("free", "paid", "trusted"))
        print(f"window {window}: free admitted {free}/{sent[window, 'free']} = {free / CAPACITY:.0%} of capacity "
              f"(share {FREE_SHARE:.0%}); paid {paid}/{sent[window, 'paid']} = {paid / CAPACITY:.0%} "
              f"(reserved {PAID_SHARE:.0%}); trusted {trusted}/{sent[window, 'trusted']}")
        assert free <= FREE_SHARE * CAPACITY  # never more than its share, however hard it floods
        assert paid / CAPACITY >= min(PAID_SHARE, sent[window, "paid"] / CAPACITY)
        assert trusted == sent[window, "trusted"]  # never shed while capacity remains
        assert free + paid + trusted <= CAPACITY
    shed = next(r for _, tier, r in results if r.status_code == 429)
    assert shed.json()["type"] == "urn:ratewarden:problem:load-shed" and shed.json()["policy"] == "search:free"
    assert shed.headers["retry-after"] == "1"
    assert "search" not in shed.headers.get("ratelimit-policy", "")  # capacity is not a client's own limit


def test_capacity_sheds_with_503_when_so_configured_and_trusted_only_at_capacity(
        redis_sync: redis.Redis, redis_url: str) -> None:
    policy = {**FAIR_POLICY, "capacity": [{**FAIR_POLICY["capacity"][0], "limit": 10, "shed_status": 503,
                                           "period": "1h"}]}
    store = ApiKeyStore(redis_sync, SECRET.encode())
    free_key, _ = store.create("f", tier="free")
    trusted_key, _ = store.create("t", tier="trusted")
    enforcer = make_enforcer(redis_url, policy, api_key_secret=SECRET, time_source="app")
    enforcer.clock = lambda: 1_900_000_000.5  # mid-hour: no window ends during the test
    with TestClient(search_app(enforcer)) as client:
        def get(key: str) -> httpx.Response:
            return client.get("/v1/search", headers={"authorization": f"Bearer {key}"})

        assert [get(free_key).status_code for _ in range(4)] == [200, 200, 200, 503]  # 30% of 10
        trusted = [get(trusted_key) for _ in range(8)]
    assert [r.status_code for r in trusted] == [200] * 7 + [503]  # the 7 units left, then nothing
    assert trusted[-1].json()["type"] == "urn:ratewarden:problem:load-shed"
    assert int(trusted[-1].headers["retry-after"]) > 1


LOGIN_POLICY = {
    "anonymous_tier": "anonymous",
    "tiers": {"anonymous": {}, "free": {}},
    "endpoints": [{"route": "POST /v1/login", "rules": [
        {"name": "login-per-ip", "algorithm": "sliding_window_log", "limit": 5, "period": "15m", "scope": ["ip"],
         "count_statuses": [401, 403]}]}],
}
GOOD = "correct-horse"


def login(client: TestClient, username: str, password: str, ip: str) -> httpx.Response:
    return client.post("/v1/login", json={"username": username, "password": password},
                       headers={"x-forwarded-for": ip})


def test_only_failed_logins_count_per_ip_and_per_username(redis_url: str) -> None:
    enforcer = make_enforcer(redis_url, LOGIN_POLICY, trusted_proxies=["127.0.0.0/8"])
    with TestClient(create_app(enforcer), client=("127.0.0.1", 5000)) as client:
        good_then_bad = [login(client, "alice", GOOD, "198.51.100.1") for _ in range(3)]
        good_then_bad += [login(client, f"user{i}", "guess", "198.51.100.1") for i in range(6)]
        regular = [login(client, "bob", GOOD, "198.51.100.2") for _ in range(50)]
        # one username from many IPs: the demo app's key function keys 'login-per-user' by username
        spread = [login(client, "victim", "guess", f"203.0.113.{i}") for i in range(1, 7)]

    assert [r.status_code for r in good_then_bad] == [200] * 3 + [401] * 5 + [429]
    assert good_then_bad[-1].json()["policy"] == "login-per-ip"
    assert {r.status_code for r in regular} == {200}  # good logins are never counted
    assert [r.status_code for r in spread] == [401] * 5 + [429]
    assert spread[-1].json()["policy"] == "login-per-user"


def test_failed_requests_are_refunded(redis_sync: redis.Redis, redis_url: str) -> None:
    enforcer = make_enforcer(redis_url, {"tiers": {"free": {}, "anonymous": {
        "rules": [{"name": "hourly", "algorithm": "fixed_window", "limit": 3, "period": "1h", "scope": ["ip"],
                   "refund_statuses": ["5xx"]}],
        "quotas": {"daily": 3, "count_statuses": ["2xx"]}}}}, local_deny_cache=False)
    app = FastAPI()
    app.add_middleware(RatewardenMiddleware, enforcer=enforcer)

    @app.get("/work")
    async def work(fail: bool = False) -> Any:
        return JSONResponse({"failed": fail}, status_code=503 if fail else 200)

    with TestClient(app, client=("192.0.2.80", 1)) as client:
        failed = [client.get("/work?fail=1").status_code for _ in range(10)]
        done = [client.get("/work").status_code for _ in range(4)]
    assert failed == [503] * 10  # each given back after its response
    assert done == [200, 200, 200, 429]
    assert int(redis_sync.hget("rw:{ip:192.0.2.80}:hourly:fw", "c")) == 3
    assert int(redis_sync.hget("rw:{ip:192.0.2.80}:daily:qd", "c")) == 3  # only the 2xx counted


@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window_counter", "sliding_window_log",
                                       "token_bucket", "gcra"])
def test_every_algorithm_counts_after_the_response_and_refunds(redis_url: str, algorithm: str) -> None:
    rules = [{"name": "counted", "algorithm": algorithm, "limit": 3, "period": "1h", "scope": ["ip"],
              "count_statuses": [401], "endpoints": ["GET /count"]},
             {"name": "refunded", "algorithm": algorithm, "limit": 3, "period": "1h", "scope": ["ip", "endpoint"],
              "refund_statuses": [500], "endpoints": ["GET /refund"]}]
    enforcer = make_enforcer(redis_url, {"tiers": {"free": {}, "anonymous": {"rules": rules}}},
                             local_deny_cache=False)
    app = FastAPI()
    app.add_middleware(RatewardenMiddleware, enforcer=enforcer)
    def answer(status: int) -> JSONResponse:
        return JSONResponse({}, status_code=status)

    app.get("/count")(answer)
    app.get("/refund")(answer)
    with TestClient(app, client=(f"192.0.2.{len(algorithm)}", 1)) as client:
        counted = [client.get(f"/count?status={s}").status_code for s in (200, 200, 401, 200, 401, 401, 200)]
        refunded = [client.get(f"/refund?status={s}").status_code for s in (500, 500, 500, 500, 200, 200, 200, 200)]
    assert counted == [200, 200, 401, 200, 401, 401, 429]
    assert refunded == [500] * 4 + [200, 200, 200, 429]


@pytest.mark.parametrize("where", ["rule", "tier", "policy"])
async def test_shadow_rules_tiers_and_policies_report_but_never_deny(redis_url: str, where: str) -> None:
    strict = {"name": "strict", "algorithm": "fixed_window", "limit": 3, "period": "1h", "scope": ["ip"]}
    loose = {"name": "loose", "algorithm": "fixed_window", "limit": 5, "period": "1h", "scope": ["ip"]}
    policy: dict[str, Any] = {"tiers": {"free": {}, "anonymous": {"rules": [strict]}},
                              "endpoints": [{"route": "GET /x", "rules": [loose]}]}
    if where == "rule":
        strict["shadow"] = True
    elif where == "tier":
        policy["tiers"]["anonymous"]["shadow"] = True
    else:
        policy["shadow"] = True
    enforcer = make_enforcer(redis_url, policy, local_deny_cache=False)
    await enforcer.start()
    ip = {"rule": "192.0.2.101", "tier": "192.0.2.102", "policy": "192.0.2.103"}[where]
    identity = await enforcer.identify(ip=ip)
    decisions = [await enforcer.decide(identity, "GET /x") for _ in range(7)]
    await enforcer.aclose()
    assert [d.shadow_denied for d in decisions[:5]] == [None] * 3 + ["strict"] * 2
    if where == "policy":  # everything a shadow: nothing denied, 'loose' would deny past 5
        assert all(d.allowed for d in decisions) and decisions[5].shadow_denied == "strict"
    else:  # 'loose' (an endpoint rule, not the tier's) still enforces; what it denies is not a shadow's finding
        assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
        assert decisions[5].rule == "loose" and decisions[5].shadow_denied is None
    assert all("strict" not in d.policy_header for d in decisions)  # a shadow is not the client's limit


def test_the_wsgi_enforcer_settles_from_a_background_thread(redis_sync: redis.Redis, redis_url: str) -> None:
    enforcer = SyncEnforcer(policy_from_mapping(LOGIN_POLICY),
                            EnforcerSettings(redis_url=redis_url, redis_budget_ms=2000, local_deny_cache=False))
    enforcer.start()
    identity = enforcer.identify(ip="192.0.2.150")
    key = "rw:{ip:192.0.2.150}:login-per-ip:swl"

    def attempt(status: int) -> bool:
        decision = enforcer.decide(identity, "POST /v1/login")
        if decision.allowed:
            enforcer.finish(decision, status)
        return decision.allowed

    try:
        assert all(attempt(200) for _ in range(50))  # good logins are never counted
        assert all(attempt(401) for _ in range(5))
        wait_until(lambda: redis_sync.zcard(key) == 5, 2.0, "failures counted off the request thread")
        assert not attempt(401)
    finally:
        enforcer.close()
    assert redis_sync.zcard(key) == 5
