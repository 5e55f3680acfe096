"""Per-client and per-endpoint time series for the console, from ``usage_minute``: requests,
admitted, denied, cost, status classes and latency per bucket, and denials by rule and kind.

Like ``queries``, every function takes a clickhouse-connect client and returns plain rows; times
are UTC and ranges ``[start, end)``. Buckets with no traffic are present, as zeros.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from .client import ClickHouse
from .queries import _range, _rows
from .ranges import buckets

__all__ = ["series", "denials", "top_clients_of_route", "latest_tier", "STATUS_CLASSES"]

Subject = Literal["client_id", "route"]
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


def _where(subject: Subject) -> str:
    return f"{subject} = {{subject:String}} AND window_start >= {{start:DateTime('UTC')}} " \
           "AND window_start < {end:DateTime('UTC')}"


def series(client: ClickHouse, subject: Subject, value: str, start: dt.datetime, end: dt.datetime, bucket_s: int,
           db: str = "ratewarden") -> list[dict[str, Any]]:
    """Per bucket of ``bucket_s`` seconds: requests, admitted, denied, cost, mean and max latency and
    requests per status class, for one client (``subject="client_id"``) or one route template."""
    statuses = ", ".join(f"sumIf(requests, status_class = '{c}') AS s{c}" for c in STATUS_CLASSES)
    found = {row["t"]: row for row in _rows(client, f"""
        SELECT toStartOfInterval(window_start, toIntervalSecond({{bucket:UInt32}}), 'UTC') AS t,
               sum(requests) AS requests, sumIf(requests, decision = 'allowed') AS admitted,
               sumIf(requests, decision = 'denied') AS denied, sum(cost) AS cost, {statuses},
               round(sum(latency_sum_ms) / greatest(sum(requests), 1), 3) AS mean_latency_ms,
               max(latency_max_ms) AS max_latency_ms
        FROM {db}.usage_minute WHERE {_where(subject)}
        GROUP BY t ORDER BY t""", {**_range(start, end), "subject": value, "bucket": bucket_s})}
    points = []
    for t in buckets(start, end, bucket_s):
        row = found.get(t, {})
        points.append({"t": t, **{k: row.get(k, 0) for k in ("requests", "admitted", "denied", "cost")},
                       "status_classes": {c: row.get(f"s{c}", 0) for c in STATUS_CLASSES},
                       "mean_latency_ms": row.get("mean_latency_ms", 0.0),
                       "max_latency_ms": row.get("max_latency_ms", 0.0)})
    return points


def denials(client: ClickHouse, subject: Subject, value: str, start: dt.datetime, end: dt.datetime, bucket_s: int,
            db: str = "ratewarden") -> list[dict[str, Any]]:
    """Denied requests per bucket, rule and kind (rate, quota, concurrency, blocked, unavailable);
    denials recorded before the rule was (migration 5) have rule and kind ''."""
    return _rows(client, f"""
        SELECT toStartOfInterval(window_start, toIntervalSecond({{bucket:UInt32}}), 'UTC') AS t,
               deny_rule AS rule, deny_kind AS kind, sum(requests) AS requests
        FROM {db}.usage_minute WHERE {_where(subject)} AND decision = 'denied'
        GROUP BY t, rule, kind ORDER BY t, rule, kind""", {**_range(start, end), "subject": value, "bucket": bucket_s})


def top_clients_of_route(client: ClickHouse, route: str, start: dt.datetime, end: dt.datetime, limit: int = 10,
                         db: str = "ratewarden") -> list[dict[str, Any]]:
    """The clients with the most requests on one route, with their denials."""
    return _rows(client, f"""
        SELECT client_id, any(tier) AS tier, sum(requests) AS requests, sumIf(requests, decision = 'denied') AS denied
        FROM {db}.usage_minute WHERE {_where("route")} AND client_id != ''
        GROUP BY client_id ORDER BY sum(requests) DESC, client_id LIMIT {{limit:UInt32}}""",
                 {**_range(start, end), "subject": route, "limit": limit})


def latest_tier(client: ClickHouse, client_id: str, start: dt.datetime, end: dt.datetime,
                db: str = "ratewarden") -> str | None:
    """The tier a client's most recent requests in the range were decided under, if any."""
    rows = _rows(client, f"""
        SELECT argMax(tier, window_start) AS tier, count() AS n FROM {db}.usage_minute
        WHERE {_where("client_id")}""", {**_range(start, end), "subject": client_id})
    return rows[0]["tier"] if rows and rows[0]["n"] else None
