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
