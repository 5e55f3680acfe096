"""Run-time changes: overrides and API keys reach every enforcer within a second."""

from __future__ import annotations

import time

import anyio
import pytest
import redis

from ratewarden.enforcer import ApiKeyStore, Enforcer, Override, OverrideStore
from ratewarden.enforcer.changes import VERSION_KEY
from ratewarden.enforcer.overrides import OVERRIDES_HASH
from ratewarden.enforcer.policy import Rule

from .helpers import make_enforcer

pytestmark = pytest.mark.anyio
SECRET = "test-secret-0123456789abcdef"
POLICY = {
    "tiers": {
        "anonymous": {"rules": [{"name": "anon", "algorithm": "fixed_window", "limit": 2, "period": "1h",
                                 "scope": ["ip"]}]},
        "free": {"rules": [{"name": "free", "algorithm": "fixed_window", "limit": 3, "period": "1h"}]},
        "paid": {"rules": [{"name": "paid", "algorithm": "fixed_window", "limit": 100, "period": "1h"}]},
    },
}


async def started(redis_url: str) -> Enforcer:
    enforcer = make_enforcer(redis_url, POLICY, api_key_secret=SECRET)
    await enforcer.start()
    return enforcer


async def eventually(predicate, within_s: float = 1.0) -> float:
    """Seconds until ``predicate()`` (an async callable) holds; fails if not within ``within_s``."""
    start = time.monotonic()
    while not await predicate():
        assert time.monotonic() - start < within_s, f"not within {within_s}s"
        await anyio.sleep(0.01)
    return time.monotonic() - start


async def test_override_set_through_one_instance_is_honoured_by_another(redis_sync: redis.Redis,
                                                                       redis_url: str) -> None:
    first, second = await started(redis_url), await started(redis_url)
    store = OverrideStore(redis_sync)
    ip = "203.0.113.50"

    async def second_denies() -> bool:
        return (await second.decide(await second.identify(ip=ip), "GET /x")).kind == "blocked"

    async def second_allows() -> bool:
        return not await second_denies()

    assert await second_allows()
    store.set(Override(client_id=f"ip:{ip}", block=True, reason="test", source="test"))
    await eventually(second_denies)
    store.clear(f"ip:{ip}")
    await eventually(second_allows)
    await first.aclose()
    await second.aclose()


async def test_tier_allow_list_and_custom_limit_overrides(redis_sync: redis.Redis, redis_url: str) -> None:
    e = await started(redis_url)
    store = OverrideStore(redis_sync)
    ip = "203.0.113.51"
    store.set(Override(client_id=f"ip:{ip}", tier="paid"))

    async def tier_is(name: str) -> bool:
        return (await e.identify(ip=ip)).tier == name

    await eventually(lambda: tier_is("paid"))
    identity = await e.identify(ip=ip)
    assert all([(await e.decide(identity, "GET /x")).allowed for _ in range(10)])

    store.set(Override(client_id=f"ip:{ip}", rules=[Rule(name="custom", limit=1, period=3600)]))
    await eventually(lambda: tier_is("anonymous"))
    identity = await e.identify(ip=ip)
    assert [(await e.decide(identity, "GET /x")).allowed for _ in range(2)] == [True, False]

    store.set(Override(client_id=f"ip:{ip}", allow=True, expires_at=time.time() + 60))

    async def allowed() -> bool:
        return (await e.decide(await e.identify(ip=ip), "GET /x")).allowed

    await eventually(allowed)
    assert all([await allowed() for _ in range(20)])
    store.set(Override(client_id=f"ip:{ip}", block=True, expires_at=time.time() - 1))  # already lapsed
    await eventually(allowed)
    assert store.list() == [] and store.purge_expired() == 1
    await e.aclose()


async def test_override_is_picked_up_after_a_lost_subscription(redis_sync: redis.Redis, redis_url: str) -> None:
    e = await started(redis_url)
    ip = "203.0.113.52"
    # write without publishing: only the version poll can notice
    redis_sync.hset(OVERRIDES_HASH, f"ip:{ip}", Override(client_id=f"ip:{ip}", block=True).model_dump_json())
    redis_sync.incr(VERSION_KEY)

    async def denied() -> bool:
        return not (await e.decide(await e.identify(ip=ip), "GET /x")).allowed

    await eventually(denied, within_s=2.0)
    await e.aclose()


async def test_api_keys_are_stored_hashed_and_revocation_is_live(redis_sync: redis.Redis, redis_url: str) -> None:
    e = await started(redis_url)
    keys = ApiKeyStore(redis_sync, SECRET.encode())
    api_key, record = keys.create(owner="acme", tier="paid")
    identity = await e.identify(ip="198.51.100.1", api_key=api_key)
    assert (identity.client_id, identity.tier, identity.owner) == (f"k:{record.id}", "paid", "acme")
    # the raw key is nowhere in Redis
    for key in redis_sync.scan_iter("*"):
        kind = redis_sync.type(key)
        dump = redis_sync.hgetall(key) if kind == b"hash" else {}
        assert api_key.encode() not in key and all(api_key.encode() not in v for v in dump.values())
    assert [r.id for r in keys.list()] == [record.id] and keys.list()[0].prefix == api_key[:7]

    unknown = await e.identify(ip="198.51.100.1", api_key="rw_not-a-real-key")
    assert (unknown.client_id, unknown.tier) == ("ip:198.51.100.1", "anonymous")

    assert keys.revoke(record.id)

    async def refused() -> bool:
        return (await e.identify(ip="198.51.100.1", api_key=api_key)).tier == "anonymous"

    await eventually(refused)
    assert not keys.revoke("key_nope")
    await e.aclose()


async def test_a_tier_changed_at_run_time_applies_within_a_second_and_clearing_restores_the_file(
        redis_sync: redis.Redis, redis_url: str) -> None:
    from ratewarden.enforcer.policy import Tier
    from ratewarden.enforcer.tiers import TierStore

    enforcer = await started(redis_url)
    store = TierStore(redis_sync)
    ip = "203.0.113.77"

    async def limit_seen() -> int:
        decision = await enforcer.decide(await enforcer.identify(ip=ip), "GET /x")
        return decision.limit

    assert await limit_seen() == 2
    store.set("anonymous", Tier(rules=[Rule(name="anon", algorithm="fixed_window", limit=50, period=3600,
                                            scope=["ip"])]))

    async def raised() -> bool:
        return await limit_seen() == 50

    took = await eventually(raised)
    assert store.get("anonymous").rules[0].limit == 50 and set(store.all()) == {"anonymous"}
    store.clear("anonymous")

    async def restored() -> bool:
        return await limit_seen() == 2

    await eventually(restored)
    with pytest.raises(ValueError):
        store.set("bad name!", Tier())
    print(f"\nrun-time tier applied in {took:.3f} s")
    await enforcer.aclose()


async def test_a_tier_added_at_run_time_serves_its_keys_from_the_first_request(
        redis_sync: redis.Redis, redis_url: str) -> None:
    from ratewarden.enforcer.policy import Tier
    from ratewarden.enforcer.tiers import TierStore

    enforcer = await started(redis_url)
    api_key, _ = ApiKeyStore(redis_sync, SECRET.encode()).create(owner="acme", tier="gold")
    TierStore(redis_sync).set("gold", Tier(rules=[Rule(name="gold", algorithm="fixed_window", limit=500,
                                                       period=3600)]))

    async def heard() -> bool:  # the change feed delivered the tier; no request has been made since
        return "gold" in enforcer.live.tiers

    await eventually(heard)
    identity = await enforcer.identify(ip="203.0.113.78", api_key=api_key)
    decision = await enforcer.decide(identity, "GET /x")
    assert (identity.tier, decision.rule, decision.limit) == ("gold", "gold", 500)
    TierStore(redis_sync).clear("gold")
    await enforcer.aclose()
