"""Staged recommendations: a proposed limit added to its tier as a shadow rule, the estimate it was
staged with, and what the enforcers' shadow findings say since, to confirm or refute it.

Staging records live in ``rw:{ctl}:staged`` (field ``<tier>/<rule>``; staging the same rule again
replaces its record). The findings are the ``usage_minute`` rows the stream wrote with the rule as
their ``shadow_rule`` since it was staged, on the tier it was staged on.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import redis
from redis.cluster import RedisCluster

from ratewarden.enforcer.policy import Rule, Tier

from .audit import AuditLog, Who
from .client import ClickHouse
from .plans import Plans
from .queries import _range, _rows
from .recommend import alerted_clients, staged_rule, with_rule, would_deny

__all__ = ["STAGED_HASH", "stage", "findings"]

STAGED_HASH = "rw:{ctl}:staged"


def stage(plans: Plans, audit: AuditLog, clickhouse: ClickHouse, who: Who | str, tier_name: str, limit: int,
          start: dt.datetime, end: dt.datetime, name: str | None = None,
          db: str = "ratewarden") -> tuple[Rule, Tier] | None:
    """Add ``limit`` to tier ``tier_name`` as a shadow rule at run time, recording what it would have
    denied over ``[start, end)`` (the estimate) and auditing it; None if there is no such tier."""
    tier = plans.get(tier_name)
    if tier is None:
        return None
    rule = staged_rule(limit, name)
    after = with_rule(tier, rule)
    estimate = would_deny(clickhouse, tier_name, limit, start, end, alerted_clients(clickhouse, start, end, db), db)
    plans.set(tier_name, after)
    actor = who.actor if isinstance(who, Who) else who
    record = {"tier": tier_name, "rule": rule.name, "limit": limit, "staged_at": time.time(), "actor": actor,
              "estimate": {"start": start.isoformat(), "end": end.isoformat(), **estimate}}
    plans.store.client.hset(STAGED_HASH, f"{tier_name}/{rule.name}", json.dumps(record))
    audit.record(who, "recommendation.stage", tier_name, tier.model_dump(mode="json"),
                 {**after.model_dump(mode="json"), "estimate": record["estimate"]})
    return rule, after


def findings(client: redis.Redis | RedisCluster, plans: Plans, clickhouse: ClickHouse,
             now: dt.datetime | None = None, db: str = "ratewarden") -> list[dict[str, Any]]:
    """Every staged rule: its estimate, whether it is still a shadow rule of its tier, and the requests
    and clients it would have denied since it was staged, each also per hour (comparable)."""
    now = now or dt.datetime.now(dt.UTC)
    effective = plans.effective()[0]
    out = []
    for raw in client.hvals(STAGED_HASH):
        record = json.loads(raw)
        since = dt.datetime.fromtimestamp(record["staged_at"], dt.UTC)
        [seen] = _rows(clickhouse, f"""
            SELECT sum(requests) AS would_deny_requests, uniqExact(client_id) AS would_deny_clients
            FROM {db}.usage_minute
            WHERE shadow_rule = {{rule:String}} AND tier = {{tier:String}}
                  AND window_start >= toStartOfMinute({{start:DateTime('UTC')}})
                  AND window_start < {{end:DateTime('UTC')}}
            """, {**_range(since, now), "rule": record["rule"], "tier": record["tier"]})
        estimate = record["estimate"]
        estimated_hours = (dt.datetime.fromisoformat(estimate["end"])
                           - dt.datetime.fromisoformat(estimate["start"])).total_seconds() / 3600
        observed_hours = max((now - since).total_seconds() / 3600, 1 / 60)
        tier = effective.get(record["tier"])
        rule = next((r for r in tier.rules if r.name == record["rule"]), None) if tier else None
        out.append({**record, "staged_at": since, "still_shadow": rule is not None and rule.shadow,
                    "estimate": {**estimate, "per_hour": round(estimate["would_deny_requests"] / estimated_hours, 3)},
                    "observed": {"since": since, "would_deny_requests": int(seen["would_deny_requests"]),
                                 "would_deny_clients": int(seen["would_deny_clients"]),
                                 "per_hour": round(int(seen["would_deny_requests"]) / observed_hours, 3)}})
    return sorted(out, key=lambda r: r["staged_at"], reverse=True)
