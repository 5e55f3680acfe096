"""Helpers shared by tests."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import redis

from enforcer import Enforcer, EnforcerSettings, policy_from_mapping


def make_enforcer(redis_url: str, policy: dict[str, Any], **settings: Any) -> Enforcer:
    """An enforcer on ``policy`` (a mapping as in a policy file)."""
    settings.setdefault("redis_budget_ms", 2000)  # tests on a busy machine must not fall back by accident
    return Enforcer(policy_from_mapping(policy), EnforcerSettings(redis_url=redis_url, **settings))


def one_rule_policy(algorithm: str, limit: int, period: str, **extra: Any) -> dict[str, Any]:
    rule = {"name": "r", "algorithm": algorithm, "limit": limit, "period": period, "scope": ["ip"], **extra}
    return {"tiers": {"anonymous": {"rules": [rule]}, "free": {}}}


def command_counts(client: redis.Redis) -> dict[str, int]:
    """Calls per command since the last CONFIG RESETSTAT, from INFO commandstats."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def offset_to(enforcer: Enforcer, when: dt.datetime) -> None:
    """Move the enforcer's script clock so that Redis' 'now' reads ``when`` (UTC)."""
    enforcer.clock_offset_s = when.timestamp() - time.time()


def hammer_one_key(redis_url: str, policy: dict[str, Any], offset_s: float, callers: int, attempts: int,
                   go: Any, ready: Any, results: Any) -> None:
    """In a child process: ``callers`` concurrent tasks each try ``attempts`` requests
    of one client once ``go`` is set; puts how many were admitted on ``results``."""
    import asyncio

    async def run() -> int:
        enforcer = make_enforcer(redis_url, policy)
        await enforcer.start()
        enforcer.clock_offset_s = offset_s
        identity = await enforcer.identify(ip="192.0.2.99")
        ready.release()
        await asyncio.get_running_loop().run_in_executor(None, go.wait)

        async def caller() -> int:
            admitted = 0
            for _ in range(attempts):
                admitted += (await enforcer.decide(identity, "GET /hot")).allowed
            return admitted

        total = sum(await asyncio.gather(*(caller() for _ in range(callers))))
        await enforcer.aclose()
        return total

    try:
        results.put(asyncio.run(run()))
    except BaseException as exc:  # the parent reports it
        results.put(repr(exc))
        raise
