"""The enforcer on a real 3-primary Redis Cluster: every algorithm, exact limits when a request's
counters live on three primaries, and nothing kept by a request one primary denied.

The algorithm and run-time change tests of ``test_algorithms`` and ``test_live_changes`` run here
again, unchanged, against the cluster (this module's ``redis_url`` and ``redis_sync``)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import anyio
import pytest
import redis
from redis.cluster import RedisCluster

from ratewarden.local_topologies import LocalCluster

from .deployment_suite import *  # noqa: F403 - the tests every deployment runs, collected here
from .helpers import hammer_request, hammer_request_sync, make_enforcer, run_processes, wait_until
from .test_exactness import test_exactly_the_limit_through_the_drf_throttle  # noqa: F401

pytestmark = pytest.mark.anyio  # the async tests imported above carry it in their own modules
PROCESSES, CALLERS, ATTEMPTS, LIMIT = 4, 8, 12, 100


@pytest.fixture
def deployment(local_cluster: LocalCluster) -> LocalCluster:
    """Where the shared tests run: the session's 3-primary cluster."""
    return local_cluster


def _on_three_primaries(cluster: LocalCluster) -> tuple[str, str, str]:
    """An IP, a route and a capacity name whose counters hash to three different primaries."""
    capacity = next(name for name in (f"pool{n}" for n in range(100))
                    if cluster.primary_of(f"{{cap:{name}}}") is cluster.primaries[2])
    ip = next(ip for ip in (f"192.0.2.{n}" for n in range(1, 255))
              if cluster.primary_of(f"{{ip:{ip}}}") is cluster.primaries[0])
    route = next(route for route in (f"GET /hot/{n}" for n in range(1000))
                 if cluster.primary_of(f"{{e:{route}}}") is cluster.primaries[1])
    return ip, route, capacity


def _three_dimension_policy(route: str, capacity: str, binding: str) -> dict[str, Any]:
    """Per-IP, per-endpoint and capacity rules (different algorithms); ``binding`` is the one at LIMIT."""
    def limit(name: str) -> int:
        return LIMIT if name == binding else 10 * LIMIT

    rules = [
        {"name": "per-ip", "algorithm": "sliding_window_log", "limit": limit("ip"), "period": "1h", "scope": ["ip"]},
        {"name": "per-route", "algorithm": "gcra", "limit": limit("endpoint"), "period": "1d",
         "burst": limit("endpoint"), "scope": ["endpoint"]},
    ]
    return {"tiers": {"anonymous": {"rules": rules}, "free": {}},
            "capacity": [{"name": capacity, "endpoints": [route], "limit": limit("capacity"), "period": "1h",
                          "algorithm": "fixed_window"}]}


@pytest.mark.parametrize(("binding", "hammer"), [
    ("ip", hammer_request), ("endpoint", hammer_request), ("capacity", hammer_request),
    ("ip", hammer_request_sync), ("capacity", hammer_request_sync),
], ids=["ip", "endpoint", "capacity", "ip-wsgi", "capacity-wsgi"])
def test_exactly_the_limit_when_the_counters_live_on_three_primaries(
        local_cluster: LocalCluster, redis_sync: RedisCluster, binding: str, hammer: Any) -> None:
    """4 processes x 8 callers (asyncio tasks, or WSGI threads), 12 tries each, for 100 places."""
    ip, route, capacity = _on_three_primaries(local_cluster)
    policy = _three_dimension_policy(route, capacity, binding)
    start = dt.datetime.now(dt.UTC).replace(minute=0, second=10, microsecond=0) + dt.timedelta(hours=1)
    admitted = run_processes(hammer, (local_cluster.url, policy, start.timestamp() - time.time(), CALLERS,
                                      ATTEMPTS, ip, route), PROCESSES)
    assert all(isinstance(n, int) for n in admitted), admitted
    print(f"binding {binding} ({hammer.__name__}): admitted {admitted} = {sum(admitted)} "
          f"of {PROCESSES * CALLERS * ATTEMPTS}")
    assert sum(admitted) == LIMIT, admitted
    assert sum(1 for n in admitted if n) > 1


async def test_a_request_denied_on_one_primary_keeps_nothing_on_the_others(
        local_cluster: LocalCluster, redis_sync: RedisCluster) -> None:
    ip, route, capacity = _on_three_primaries(local_cluster)
    rules = [{"name": "per-ip", "algorithm": "fixed_window", "limit": 1000, "period": "1h", "scope": ["ip"]},
             {"name": "per-route", "algorithm": "fixed_window", "limit": 3, "period": "1h", "scope": ["endpoint"]},
             {"name": "slots", "algorithm": "concurrency", "limit": 1000, "period": "1m", "scope": ["ip"]}]
    policy = {"tiers": {"anonymous": {"rules": rules}, "free": {}},
              "capacity": [{"name": capacity, "endpoints": [route], "limit": 1000, "period": "1h",
                            "algorithm": "sliding_window_counter"}]}
    enforcer = make_enforcer(local_cluster.url, policy, local_deny_cache=False)
    await enforcer.start()
    identity = await enforcer.identify(ip=ip)
    decisions = [await enforcer.decide(identity, route) for _ in range(10)]
    assert [d.allowed for d in decisions] == [True] * 3 + [False] * 7
    assert {d.rule for d in decisions[3:]} == {"per-route"}

    plan = enforcer.plan("anonymous", route)
    keys = dict(zip([rule.name for rule in plan.rules], plan.keys(identity), strict=True))
    assert len({local_cluster.primary_of(key).port for key in keys.values()}) == 3

    def settled() -> bool:
        ip_count = int(redis_sync.hget(keys["per-ip"], "c") or 0)
        leases = redis_sync.zcard(keys["slots"])
        shared = int(redis_sync.hget(keys[capacity], "c") or 0)
        return ip_count == 3 and leases == 3 and shared == 3
    waited = await anyio.to_thread.run_sync(lambda: wait_until(settled, 5, "the denied requests given back"))
    print(f"7 denials given back on the other primaries within {waited:.3f} s")
    for decision in decisions[:3]:
        enforcer.finish(decision, 200)
    await anyio.to_thread.run_sync(lambda: wait_until(lambda: redis_sync.zcard(keys["slots"]) == 0, 5,
                                                      "the leases of finished requests released"))
    await enforcer.aclose()


def test_the_wsgi_enforcer_gives_back_what_a_denied_request_took_too(
        local_cluster: LocalCluster, redis_sync: RedisCluster) -> None:
    from ratewarden.enforcer import EnforcerSettings, SyncEnforcer, policy_from_mapping

    ip, route, _capacity = _on_three_primaries(local_cluster)
    rules = [{"name": "per-ip", "algorithm": "gcra", "limit": 1000, "period": "1h", "burst": 1000, "scope": ["ip"]},
             {"name": "per-route", "algorithm": "sliding_window_log", "limit": 2, "period": "1h",
              "scope": ["endpoint"]}]
    enforcer = SyncEnforcer(policy_from_mapping({"tiers": {"anonymous": {"rules": rules}, "free": {}}}),
                            EnforcerSettings(redis_url=local_cluster.url, redis_budget_ms=2000, local_deny_cache=False))
    enforcer.start()
    identity = enforcer.identify(ip=ip)
    assert [enforcer.decide(identity, route).allowed for _ in range(6)] == [True, True] + [False] * 4
    ip_key = enforcer.plan("anonymous", route).keys(identity)[0]
    interval_us = 3600e6 / 1000

    def settled() -> bool:  # the GCRA arrival time moved by the two admitted requests only
        now_us = redis_sync.time()[0] * 1e6
        return float(redis_sync.hget(ip_key, "t") or 0) - now_us <= 2 * interval_us + 1e6
    wait_until(settled, 5, "the WSGI enforcer's denials given back")
    enforcer.close()


async def test_counters_in_several_slots_of_one_primary_take_one_script_call(
        local_cluster: LocalCluster, redis_sync: RedisCluster) -> None:
    primary = local_cluster.primaries[0]
    ip = next(ip for ip in (f"203.0.113.{n}" for n in range(1, 255))
              if local_cluster.primary_of(f"{{ip:{ip}}}") is primary)
    route = next(route for route in (f"GET /same/{n}" for n in range(1000))
                 if local_cluster.primary_of(f"{{e:{route}}}") is primary)
    rules = [{"name": "per-ip", "algorithm": "token_bucket", "limit": 3, "period": "1h", "scope": ["ip"]},
             {"name": "per-route", "algorithm": "fixed_window", "limit": 1000, "period": "1h", "scope": ["endpoint"]}]
    enforcer = make_enforcer(local_cluster.url, {"tiers": {"anonymous": {"rules": rules}, "free": {}}},
                             local_deny_cache=False)
    await enforcer.start()
    identity = await enforcer.identify(ip=ip)
    node = redis.Redis(host=primary.host, port=primary.port)
    node.config_resetstat()
    assert [(await enforcer.decide(identity, route)).allowed for _ in range(5)] == [True] * 3 + [False] * 2
    scripts = sum(int(stats["calls"]) for name, stats in node.info("commandstats").items()
                  if name in ("cmdstat_evalsha", "cmdstat_eval"))
    assert scripts in (5, 6), scripts  # one call per decision (the first EVALSHA may meet NOSCRIPT, then EVAL)
    assert int(redis_sync.hget(enforcer.plan("anonymous", route).keys(identity)[1], "c")) == 3
    node.close()
    await enforcer.aclose()


async def test_decisions_follow_a_slot_moved_to_another_primary(local_cluster: LocalCluster,
                                                               redis_sync: RedisCluster) -> None:
    """Resharding at run time: ASK while the slot migrates (its keys already on the new primary),
    MOVED once it has; no decision leaves Redis and the count carries on."""
    rules = [{"name": "per-ip", "algorithm": "fixed_window", "limit": 10, "period": "1h", "scope": ["ip"]}]
    enforcer = make_enforcer(local_cluster.url, {"tiers": {"anonymous": {"rules": rules}, "free": {}}},
                             local_deny_cache=False)
    await enforcer.start()
    identity = await enforcer.identify(ip="192.0.2.77")
    key = enforcer.plan("anonymous", "GET /x").keys(identity)[0]
    source = local_cluster.primary_of(key)
    target = next(node for node in local_cluster.primaries if node is not source)
    src = redis.Redis(host=source.host, port=source.port, decode_responses=True)
    dst = redis.Redis(host=target.host, port=target.port, decode_responses=True)
    slot, source_id, target_id = src.cluster("KEYSLOT", key), src.cluster("MYID"), dst.cluster("MYID")
    decisions = [await enforcer.decide(identity, "GET /x") for _ in range(3)]

    dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
    src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
    keys = src.execute_command("CLUSTER GETKEYSINSLOT", slot, 100)
    src.execute_command("MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *keys)
    decisions += [await enforcer.decide(identity, "GET /x") for _ in range(3)]  # the source answers ASK

    for node in local_cluster.primaries:
        redis.Redis(host=node.host, port=node.port).execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
    decisions += [await enforcer.decide(identity, "GET /x") for _ in range(6)]  # the source answers MOVED

    assert not any(d.degraded for d in decisions)
    assert [d.allowed for d in decisions] == [True] * 10 + [False] * 2
    assert int(dst.hget(key, "c")) == 10 and enforcer.runner.owner(key).port == target.port
    src.close(), dst.close()
    await enforcer.aclose()
