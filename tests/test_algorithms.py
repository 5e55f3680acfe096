"""Every algorithm's allow/deny/reset behaviour against a real server, time driven by the script clock."""

from __future__ import annotations

import datetime as dt

import pytest
import redis

from ratewarden.enforcer import Decision, Enforcer

from .helpers import make_enforcer, offset_to, one_rule_policy

pytestmark = pytest.mark.anyio

# a window boundary for every period used here (10 s divides a day)
T0 = dt.datetime(2031, 5, 6, 7, 8, 0, tzinfo=dt.UTC)


async def hits(enforcer: Enforcer, n: int, ip: str = "192.0.2.1", route: str = "GET /x") -> list[Decision]:
    identity = await enforcer.identify(ip=ip)
    return [await enforcer.decide(identity, route) for _ in range(n)]


def allowed(decisions: list[Decision]) -> list[bool]:
    return [d.allowed for d in decisions]


async def started(redis_url: str, policy: dict) -> Enforcer:
    enforcer = make_enforcer(redis_url, policy, local_deny_cache=False)
    await enforcer.start()
    return enforcer


async def at(enforcer: Enforcer, seconds_after_t0: float) -> None:
    offset_to(enforcer, T0 + dt.timedelta(seconds=seconds_after_t0))


async def test_fixed_window(redis_sync: redis.Redis, redis_url: str) -> None:
    e = await started(redis_url, one_rule_policy("fixed_window", 3, "10s"))
    await at(e, 1)
    result = await hits(e, 4)
    assert allowed(result) == [True, True, True, False]
    assert [d.remaining for d in result[:3]] == [2, 1, 0]
    assert result[3].rule == "r" and result[3].kind == "rate"
    assert result[3].retry_after_s == pytest.approx(9.0, abs=0.15)
    await at(e, 10.01)  # next window
    assert allowed(await hits(e, 4)) == [True, True, True, False]
    await e.aclose()


async def test_sliding_window_counter_weights_the_previous_window(redis_sync: redis.Redis, redis_url: str) -> None:
    e = await started(redis_url, one_rule_policy("sliding_window_counter", 10, "10s"))
    await at(e, 1)
    assert allowed(await hits(e, 11)) == [True] * 10 + [False]
    await at(e, 15)  # half-way into the next window: the previous 10 weigh 5
    result = await hits(e, 6)
    assert allowed(result) == [True] * 5 + [False]
    # the previous window's weight must fall by one request: 1 s
    assert result[-1].retry_after_s == pytest.approx(1.0, abs=0.15)
    await at(e, 16.01)
    assert allowed(await hits(e, 2)) == [True, False]
    await at(e, 30.01)  # two windows later nothing counts
    assert allowed(await hits(e, 10)) == [True] * 10
    await e.aclose()


async def test_sliding_window_log(redis_sync: redis.Redis, redis_url: str) -> None:
    e = await started(redis_url, one_rule_policy("sliding_window_log", 3, "10s"))
    await at(e, 0)
    assert allowed(await hits(e, 1)) == [True]
    await at(e, 4)
    assert allowed(await hits(e, 2)) == [True, True]
    await at(e, 5)
    denied = (await hits(e, 1))[0]
    # the entry at t=0 leaves at t=10
    assert not denied.allowed and denied.retry_after_s == pytest.approx(5.0, abs=0.15)
    await at(e, 10.01)
    result = await hits(e, 2)
    assert allowed(result) == [True, False]
    assert result[1].retry_after_s == pytest.approx(4.0, abs=0.15)  # the two entries at t=4 leave at t=14
    await e.aclose()


@pytest.mark.parametrize("algorithm", ["token_bucket", "gcra"])
async def test_buckets_refill_at_rate_up_to_burst(redis_sync: redis.Redis, redis_url: str, algorithm: str) -> None:
    e = await started(redis_url, one_rule_policy(algorithm, 10, "10s", burst=5))
    await at(e, 0)
    result = await hits(e, 6)
    assert allowed(result) == [True] * 5 + [False]
    assert result[-1].retry_after_s == pytest.approx(1.0, abs=0.15)
    await at(e, 1.01)
    assert allowed(await hits(e, 2)) == [True, False]
    await at(e, 100)  # a long pause refills to the burst, not beyond
    assert allowed(await hits(e, 6)) == [True] * 5 + [False]
    await e.aclose()


async def test_gcra_raising_a_limit_takes_effect_at_once(redis_sync: redis.Redis, redis_url: str) -> None:
    slow = await started(redis_url, one_rule_policy("gcra", 1, "100s"))
    await at(slow, 0)
    assert allowed(await hits(slow, 2)) == [True, False]
    await slow.aclose()
    fast = await started(redis_url, one_rule_policy("gcra", 10, "1s"))
    await at(fast, 0.5)
    first = (await hits(fast, 1))[0]
    # without clamping the stored arrival time the client would wait ~99 s more
    assert first.allowed or first.retry_after_s < 1.0
    await at(fast, 2)
    assert allowed(await hits(fast, 10)) == [True] * 10
    await fast.aclose()


async def test_concurrency_slots_are_released_and_leaked_ones_expire(redis_sync: redis.Redis, redis_url: str) -> None:
    e = await started(redis_url, one_rule_policy("concurrency", 2, "30s"))
    await at(e, 0)
    first, second, third = await hits(e, 3)
    assert (first.allowed, second.allowed, third.allowed) == (True, True, False)
    assert third.kind == "concurrency"
    e.finish(first, 200)
    await e.runner.execute("EXISTS", first.leases[0][0])  # queued after the release, so answered after it
    assert redis_sync.zcard(first.leases[0][0]) == 1
    fourth, fifth = await hits(e, 2)
    assert (fourth.allowed, fifth.allowed) == (True, False)
    await at(e, 31)  # second and fourth were never released: their leases lapse
    assert allowed(await hits(e, 3)) == [True, True, False]
    await e.aclose()


async def test_every_key_gets_a_ttl(redis_sync: redis.Redis, redis_url: str) -> None:
    for algorithm, extra in [("fixed_window", {}), ("sliding_window_counter", {}), ("sliding_window_log", {}),
                             ("token_bucket", {"burst": 3}), ("gcra", {}), ("concurrency", {})]:
        e = await started(redis_url, one_rule_policy(algorithm, 5, "10s", **extra))
        await hits(e, 2, ip=f"198.51.100.{len(algorithm)}")
        await e.aclose()
    keys = list(redis_sync.scan_iter("rw:{*"))  # every primary of a cluster
    assert len(keys) == 6
    assert all(0 < redis_sync.pttl(k) <= 21_000 for k in keys), {k: redis_sync.pttl(k) for k in keys}
