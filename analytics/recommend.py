"""Recommended per-tier limits from recorded usage, with what each would have denied.

For each tier: every legitimate client's busiest minute in the period (clients with an alert in
the period left out), the ``percentile``-th of those peaks (nearest rank), times ``headroom``,
rounded up, is the proposed per-minute limit per client. Replayed on the same minute aggregates
(``usage_minute``), a client's minute of ``r`` requests under a limit ``L`` would have had
``max(r - L, 0)`` denied: summed, these are the requests the proposal would have denied; the
clients with any are the clients it would have denied.

The proposal is staged as a shadow rule (fixed window, per client, one minute) on its tier, so
the enforcers' shadow findings (``GET /api/v1/shadow``) then confirm or refute the estimate.
The replay counts requests; a rule counts cost units, so routes costing more than 1 deny sooner.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass
from typing import Any

from ratewarden.enforcer.policy import Algorithm, Rule, Scope, Tier

from .client import ClickHouse
from .queries import _range, _rows

__all__ = ["Proposal", "recommend", "would_deny", "staged_rule", "with_rule", "nearest_rank", "alerted_clients"]

PERIOD_S = 60


@dataclass(frozen=True)
class Proposal:
    tier: str
    limit: int  # requests per minute per client
    period_s: int
    rule_name: str
    percentile: float
    headroom: float
    peak_at_percentile: int  # the legitimate clients' per-minute peak at the percentile
    legit_clients: int  # clients whose peaks made the percentile
    excluded_clients: list[str]  # clients left out: they had alerts in the period
    requests: int  # every request of the tier in the period
    would_deny_requests: int
    would_deny_clients: int
    would_deny_legit_requests: int  # of which from clients without alerts
    would_deny_legit_clients: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def nearest_rank(values: list[int], percentile: float) -> int:
    """The ``percentile``-th (0-100] of ``values`` by the nearest-rank method: the smallest value
    at least ``percentile`` percent of them do not exceed."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(percentile / 100 * len(ordered)) - 1)]


def _per_minute(db: str) -> str:
    return f"""SELECT client_id, window_start, sum(requests) AS r FROM {db}.usage_minute
               WHERE tier = {{tier:String}} AND client_id != '' AND window_start >= {{start:DateTime('UTC')}}
                     AND window_start < {{end:DateTime('UTC')}}
               GROUP BY client_id, window_start"""


def would_deny(client: ClickHouse, tier: str, limit: int, start: dt.datetime, end: dt.datetime,
               excluded: list[str], db: str = "ratewarden") -> dict[str, int]:
    """Replay a per-client limit of ``limit`` requests a minute on the tier's minute aggregates."""
    [row] = _rows(client, f"""
        SELECT sum(r) AS requests, sum(greatest(r, {{limit:UInt64}}) - {{limit:UInt64}}) AS would_deny_requests,
               uniqExactIf(client_id, r > {{limit:UInt64}}) AS would_deny_clients,
               sumIf(greatest(r, {{limit:UInt64}}) - {{limit:UInt64}}, NOT has({{excluded:Array(String)}}, client_id))
                   AS would_deny_legit_requests,
               uniqExactIf(client_id, r > {{limit:UInt64}} AND NOT has({{excluded:Array(String)}}, client_id))
                   AS would_deny_legit_clients
        FROM ({_per_minute(db)})""", {**_range(start, end), "tier": tier, "limit": limit, "excluded": excluded})
    return {k: int(v) for k, v in row.items()}


def staged_rule(limit: int, name: str | None = None) -> Rule:
    """The shadow rule a proposal is staged as: ``limit`` requests a minute per client, fixed window
    (the minute aggregates' own windows)."""
    return Rule(name=name or f"recommended-{limit}-per-1m", algorithm=Algorithm.fixed_window, limit=limit,
                period=PERIOD_S, scope=[Scope.client], shadow=True)


def with_rule(tier: Tier, rule: Rule) -> Tier:
    """``tier`` with ``rule`` added (replacing a rule of the same name)."""
    return tier.model_copy(update={"rules": [*(r for r in tier.rules if r.name != rule.name), rule]})


def alerted_clients(client: ClickHouse, start: dt.datetime, end: dt.datetime, db: str = "ratewarden") -> list[str]:
    """The clients with an alert in ``[start, end)``: not legitimate for the period."""
    return sorted(r["client_id"] for r in _rows(client, f"""
        SELECT DISTINCT client_id FROM {db}.alerts FINAL
        WHERE last_seen >= {{start:DateTime('UTC')}} AND first_seen < {{end:DateTime('UTC')}} AND client_id != ''""",
                                                _range(start, end)))


def recommend(client: ClickHouse, start: dt.datetime, end: dt.datetime, percentile: float = 99.0,
              headroom: float = 1.5, tiers: list[str] | None = None, db: str = "ratewarden") -> list[Proposal]:
    """A proposal per tier with legitimate traffic in ``[start, end)`` (or per tier of ``tiers``)."""
    alerted = alerted_clients(client, start, end, db)
    peaks: dict[str, list[int]] = {}
    excluded: dict[str, set[str]] = {}
    for row in _rows(client, f"""
            SELECT tier, client_id, max(r) AS peak FROM (
                SELECT tier, client_id, window_start, sum(requests) AS r FROM {db}.usage_minute
                WHERE client_id != '' AND window_start >= {{start:DateTime('UTC')}}
                      AND window_start < {{end:DateTime('UTC')}}
                GROUP BY tier, client_id, window_start)
            GROUP BY tier, client_id ORDER BY tier, client_id""", _range(start, end)):
        if tiers is not None and row["tier"] not in tiers:
            continue
        if row["client_id"] in alerted:
            excluded.setdefault(row["tier"], set()).add(row["client_id"])
        else:
            peaks.setdefault(row["tier"], []).append(int(row["peak"]))
    proposals = []
    for tier, values in sorted(peaks.items()):
        peak = nearest_rank(values, percentile)
        limit = max(1, math.ceil(round(peak * headroom, 6)))  # 10 * 1.1 is 11.000000000000002
        left_out = sorted(excluded.get(tier, ()))
        proposals.append(Proposal(
            tier=tier, limit=limit, period_s=PERIOD_S, rule_name=staged_rule(limit).name, percentile=percentile,
            headroom=headroom, peak_at_percentile=peak, legit_clients=len(values), excluded_clients=left_out,
            **would_deny(client, tier, limit, start, end, left_out, db)))
    return proposals
