"""Several rules in one call (all-or-nothing), weighted costs, and calendar quotas across period boundaries,
with billing anchors from the policy or set per client at run time, driven by the test clock."""

from __future__ import annotations

import datetime as dt
import re
import time

import anyio
import httpx
import pytest
import redis
from fastapi import FastAPI

from ratewarden.enforcer import Enforcer, Override, OverrideStore
from ratewarden.enforcer.asgi import RatewardenMiddleware

from .helpers import make_enforcer, offset_to

pytestmark = pytest.mark.anyio
UTC = dt.UTC
IP = "192.0.2.7"


async def started(redis_url: str, policy: dict) -> Enforcer:
    enforcer = make_enforcer(redis_url, policy, local_deny_cache=False)
    await enforcer.start()
    return enforcer


async def decide(enforcer: Enforcer, route: str, n: int = 1) -> list[bool]:
    identity = await enforcer.identify(ip=IP)
    return [(await enforcer.decide(identity, route)).allowed for _ in range(n)]


async def test_a_request_denied_by_one_rule_consumes_from_none(redis_sync: redis.Redis, redis_url: str) -> None:
    e = await started(redis_url, {
        "tiers": {"anonymous": {"rules": [
            {"name": "overall", "algorithm": "fixed_window", "limit": 5, "period": "1h", "scope": ["ip"]},
            {"name": "narrow", "algorithm": "token_bucket", "limit": 2, "period": "1h", "scope": ["ip", "endpoint"],
             "endpoints": ["GET /narrow"]},
            {"name": "log", "algorithm": "sliding_window_log", "limit": 50, "period": "1h", "scope": ["ip"]},
        ], "quotas": {"daily": 100}}, "free": {}},
    })
    assert await decide(e, "GET /narrow", 4) == [True, True, False, False]
    # the two denials above consumed nothing from 'overall', 'log' or the quota: three more fit
    assert await decide(e, "GET /wide", 4) == [True, True, True, False]
    assert redis_sync.zcard(f"rw:{{ip:{IP}}}:log:swl") == 5
    assert int(redis_sync.hget(f"rw:{{ip:{IP}}}:daily:qd", "c")) == 5
    await e.aclose()


async def test_weighted_cost_is_checked_before_it_is_admitted(redis_sync: redis.Redis, redis_url: str) -> None:
    e = await started(redis_url, {
        "tiers": {"anonymous": {"rules": [
            {"name": "units", "algorithm": "sliding_window_counter", "limit": 7, "period": "1h", "scope": ["ip"]},
        ]}, "free": {}},
        "endpoints": [{"route": "GET /search", "cost": 5}],
    })
    assert await decide(e, "GET /search", 2) == [True, False]  # 5 used; 5 more would make 10 > 7
    assert await decide(e, "GET /cheap", 3) == [True, True, False]  # the denied search took nothing
    await e.aclose()


async def test_daily_quota_resets_at_utc_midnight(redis_sync: redis.Redis, redis_url: str) -> None:
    e = await started(redis_url, {"tiers": {"anonymous": {"quotas": {"daily": 3}}, "free": {}}})
    offset_to(e, dt.datetime(2030, 3, 10, 23, 59, 58, tzinfo=UTC))
    identity = await e.identify(ip=IP)
    results = [await e.decide(identity, "GET /x") for _ in range(4)]
    assert [d.allowed for d in results] == [True, True, True, False]
    assert results[3].kind == "quota" and results[3].rule == "daily"
    assert results[3].retry_after_s == pytest.approx(2.0, abs=0.2)
    offset_to(e, dt.datetime(2030, 3, 11, 0, 0, 1, tzinfo=UTC))
    assert await decide(e, "GET /x", 4) == [True, True, True, False]
    await e.aclose()


async def test_monthly_quota_follows_the_calendar(redis_sync: redis.Redis, redis_url: str) -> None:
    e = await started(redis_url, {"tiers": {"anonymous": {"quotas": {"monthly": 2}}, "free": {}}})
    offset_to(e, dt.datetime(2030, 1, 31, 23, 59, 59, tzinfo=UTC))
    identity = await e.identify(ip=IP)
    results = [await e.decide(identity, "GET /x") for _ in range(3)]
    assert [d.allowed for d in results] == [True, True, False]
    assert results[2].kind == "quota" and results[2].retry_after_s == pytest.approx(1.0, abs=0.2)
    offset_to(e, dt.datetime(2030, 2, 1, 0, 0, 0, 500_000, tzinfo=UTC))
    assert await decide(e, "GET /x", 3) == [True, True, False]
    offset_to(e, dt.datetime(2030, 2, 28, 23, 0, tzinfo=UTC))  # still February: still spent
    assert await decide(e, "GET /x") == [False]
    await e.aclose()


async def test_quota_counts_admitted_requests_only(redis_sync: redis.Redis, redis_url: str) -> None:
    e = await started(redis_url, {"tiers": {"anonymous": {
        "rules": [{"name": "per-min", "algorithm": "fixed_window", "limit": 2, "period": "1m", "scope": ["ip"]}],
        "quotas": {"daily": 10, "monthly": 100}}, "free": {}}})
    offset_to(e, dt.datetime(2030, 6, 1, 12, 0, 1, tzinfo=UTC))
    assert await decide(e, "GET /x", 10) == [True, True] + [False] * 8
    offset_to(e, dt.datetime(2030, 6, 1, 12, 1, 1, tzinfo=UTC))
    assert await decide(e, "GET /x", 5) == [True, True, False, False, False]
    assert int(redis_sync.hget(f"rw:{{ip:{IP}}}:daily:qd", "c")) == 4
    assert int(redis_sync.hget(f"rw:{{ip:{IP}}}:monthly:qm", "c")) == 4
    await e.aclose()


@pytest.mark.parametrize(
    ("start", "still_same_period", "next_period"),
    [
        # anchored on the 31st: February's period starts on its last day
        (dt.datetime(2031, 1, 31, 0, 0, 1), dt.datetime(2031, 2, 27, 23, 59, 59), dt.datetime(2031, 2, 28, 0, 0, 1)),
        # a leap year: the 29th
        (dt.datetime(2028, 1, 31, 0, 0, 1), dt.datetime(2028, 2, 28, 23, 59, 59), dt.datetime(2028, 2, 29, 0, 0, 1)),
        # and from February's short period on into March 31st
        (dt.datetime(2028, 2, 29, 0, 0, 1), dt.datetime(2028, 3, 30, 23, 59, 59), dt.datetime(2028, 3, 31, 0, 0, 1)),
    ],
)
async def test_monthly_quota_with_billing_anchor(redis_sync: redis.Redis, redis_url: str, start: dt.datetime,
                                                 still_same_period: dt.datetime, next_period: dt.datetime) -> None:
    e = await started(redis_url, {"tiers": {"anonymous": {"quotas": {"monthly": 1, "billing_anchor_day": 31}},
                                            "free": {}}})
    offset_to(e, start.replace(tzinfo=UTC))
    assert await decide(e, "GET /x", 2) == [True, False]
    offset_to(e, still_same_period.replace(tzinfo=UTC))
    identity = await e.identify(ip=IP)
    denied = await e.decide(identity, "GET /x")
    assert not denied.allowed
    assert denied.retry_after_s == pytest.approx((next_period - still_same_period).total_seconds() - 1, abs=0.5)
    offset_to(e, next_period.replace(tzinfo=UTC))
    assert await decide(e, "GET /x", 2) == [True, False]
    await e.aclose()


async def test_a_billing_anchor_set_at_run_time_moves_the_reset_the_headers_report(
        redis_sync: redis.Redis, redis_url: str) -> None:
    e = await started(redis_url, {"tiers": {"free": {}, "anonymous": {
        "rules": [{"name": "per-minute", "algorithm": "fixed_window", "limit": 10, "period": "1m", "scope": ["ip"]}],
        "quotas": {"monthly": 1000}}}})
    app = FastAPI()
    app.add_middleware(RatewardenMiddleware, enforcer=e)
    app.get("/x")(lambda: {})

    async def monthly_at(when: dt.datetime) -> tuple[int, int]:
        """(remaining, seconds to reset) of the monthly quota in RateLimit for a request at ``when``."""
        offset_to(e, when.replace(tzinfo=UTC))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app, client=(IP, 1)), base_url="http://t") as c:
            response = await c.get("/x")
        assert response.status_code == 200
        assert response.headers["ratelimit"].startswith('"per-minute";r=9;')  # the headline, then the quota
        remaining, reset = re.search(r'"monthly";r=(\d+);t=(\d+)', response.headers["ratelimit"]).groups()
        return int(remaining), int(reset)

    def until(a: dt.datetime, b: dt.datetime) -> int:
        return int((b - a).total_seconds())

    now = dt.datetime(2028, 2, 10, 12, 0)
    assert await monthly_at(now) == (999, until(now, dt.datetime(2028, 3, 1)))  # the calendar month
    OverrideStore(redis_sync).set(Override(client_id=f"ip:{IP}", billing_anchor_day=31, source="test"))
    deadline = time.monotonic() + 1.0
    while e.live.override(f"ip:{IP}") is None:
        assert time.monotonic() < deadline, "the anchor was not picked up within a second"
        await anyio.sleep(0.01)
    # anchored on the 31st: in a leap year February's period starts on the 29th
    assert await monthly_at(now + dt.timedelta(minutes=1)) == (999, until(now, dt.datetime(2028, 2, 29)) - 60)
    assert await monthly_at(dt.datetime(2028, 2, 28, 23, 59)) == (998, 60)
    assert await monthly_at(dt.datetime(2028, 2, 29, 0, 1)) == (999, until(dt.datetime(2028, 2, 29, 0, 1),
                                                                          dt.datetime(2028, 3, 31)))
    assert (await monthly_at(dt.datetime(2028, 3, 31, 0, 1)))[0] == 999  # and March 31st begins the next
    OverrideStore(redis_sync).clear(f"ip:{IP}")
    await e.aclose()
