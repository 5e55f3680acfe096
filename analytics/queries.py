"""The query layer over the ClickHouse schema: usage over time, top clients, endpoints,
quota consumption, alert and penalty history, shadow rules' would-deny counts, and CSV
export for billing.

Every function takes a clickhouse-connect client and returns plain rows (dicts), so the
admin API, the console and the CLI share them. Times are UTC; ranges are ``[start, end)``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from typing import Any, Literal

from .client import ClickHouse

__all__ = ["usage_over_time", "top_clients", "endpoint_usage", "quota_consumption", "alert_history",
           "penalty_history", "usage_csv", "tier_rates", "month_start", "as_utc", "shadow_denials"]

Step = Literal["minute", "hour", "day"]
_SOURCES = {  # step -> (table, time column)
    "minute": ("usage_minute", "window_start"),
    "hour": ("usage_hour", "hour"),
    "day": ("usage_day", "day"),
}


def _rows(client: ClickHouse, sql: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
    # aggregates are named after the columns they sum: let column names win over those aliases
    result = client.query(sql, parameters=parameters, settings={"prefer_column_name_to_alias": 1})
    return [{name: as_utc(value) for name, value in zip(result.column_names, row, strict=True)}
            for row in result.result_rows]


def as_utc(value: Any) -> Any:
    """Datetimes as aware UTC, whatever the server's or the client's time zone."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return value


def _range(start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
    return {"start": start.astimezone(dt.UTC).replace(tzinfo=None),
            "end": end.astimezone(dt.UTC).replace(tzinfo=None)}


def shadow_denials(client: ClickHouse, start: dt.datetime, end: dt.datetime, top: int = 10,
                   db: str = "ratewarden") -> list[dict[str, Any]]:
    """Per shadow rule: the requests it would have denied, how many clients, which (most first)."""
    rows = _rows(client, f"""
        SELECT shadow_rule AS rule, sum(requests) AS would_deny, count() AS clients,
               arraySlice(arrayReverseSort(x -> x.2, groupArray((client_id, requests))), 1, {{top:UInt32}}) AS pairs,
               arrayDistinct(arrayFlatten(groupArray(client_tiers))) AS tiers,
               arrayDistinct(arrayFlatten(groupArray(client_routes))) AS routes
        FROM (SELECT shadow_rule, client_id, sum(requests) AS requests, groupUniqArray(tier) AS client_tiers,
                     groupUniqArray(route) AS client_routes
              FROM {db}.usage_minute
              WHERE shadow_rule != '' AND window_start >= {{start:DateTime('UTC')}}
                    AND window_start < {{end:DateTime('UTC')}}
              GROUP BY shadow_rule, client_id)
        GROUP BY rule ORDER BY would_deny DESC, rule""", {**_range(start, end), "top": top})
    for row in rows:
        row["top_clients"] = [{"client_id": c, "would_deny": n} for c, n in row.pop("pairs")]
        row["tiers"], row["routes"] = sorted(row["tiers"]), sorted(row["routes"])
    return rows


def usage_over_time(client: ClickHouse, start: dt.datetime, end: dt.datetime, step: Step = "minute",
                    client_id: str | None = None, db: str = "ratewarden") -> list[dict[str, Any]]:
    """Requests, admitted, denied and cost per ``step``, for one client or everyone."""
    table, column = _SOURCES[step]
    where = "AND client_id = {client_id:String}" if client_id else ""
    return _rows(client, f"""
        SELECT toDateTime({column}, 'UTC') AS t, sum(requests) AS requests,
               sumIf(requests, decision = 'allowed') AS admitted, sumIf(requests, decision = 'denied') AS denied,
               sum(cost) AS cost
        FROM {db}.{table}
        WHERE {column} >= {{start:DateTime('UTC')}} AND {column} < {{end:DateTime('UTC')}} {where}
        GROUP BY t ORDER BY t""", {**_range(start, end), "client_id": client_id or ""})


_ORDER = {"requests": "sum(requests)", "denied": "sumIf(requests, decision = 'denied')"}


def top_clients(client: ClickHouse, start: dt.datetime, end: dt.datetime,
                by: Literal["requests", "denied"] = "requests", limit: int = 10,
                db: str = "ratewarden") -> list[dict[str, Any]]:
    """The clients with the most requests (or denials) in the range."""
    return _rows(client, f"""
        SELECT client_id, any(tier) AS tier, sum(requests) AS requests,
               sumIf(requests, decision = 'denied') AS denied, sum(cost) AS cost
        FROM {db}.usage_hour
        WHERE hour >= toStartOfHour({{start:DateTime('UTC')}}) AND hour < {{end:DateTime('UTC')}}
        GROUP BY client_id ORDER BY {_ORDER[by]} DESC, client_id LIMIT {{limit:UInt32}}
        """, {**_range(start, end), "limit": limit})


def endpoint_usage(client: ClickHouse, start: dt.datetime, end: dt.datetime,
                   db: str = "ratewarden") -> list[dict[str, Any]]:
    """Per route: requests, denied, cost, 5xx, mean and max latency."""
    return _rows(client, f"""
        SELECT route, sum(requests) AS requests, sumIf(requests, decision = 'denied') AS denied, sum(cost) AS cost,
               sumIf(requests, status_class = '5xx') AS errors,
               round(sum(latency_sum_ms) / greatest(sum(requests), 1), 3) AS mean_latency_ms,
               max(latency_max_ms) AS max_latency_ms
        FROM {db}.usage_minute
        WHERE window_start >= {{start:DateTime('UTC')}} AND window_start < {{end:DateTime('UTC')}} AND client_id != ''
        GROUP BY route ORDER BY sum(requests) DESC, route""", _range(start, end))


def month_start(day: dt.date, anchor_day: int | None = None) -> dt.date:
    """The first day of the quota month holding ``day``: the 1st, or the billing anchor day
    (clamped to the month's length, so an anchor of 31 is the 28th or 29th in February)."""
    import calendar

    if not anchor_day:
        return day.replace(day=1)

    def anchored(year: int, month: int) -> dt.date:
        return dt.date(year, month, min(anchor_day, calendar.monthrange(year, month)[1]))

    this = anchored(day.year, day.month)
    if day >= this:
        return this
    year, month = (day.year, day.month - 1) if day.month > 1 else (day.year - 1, 12)
    return anchored(year, month)


def quota_consumption(client: ClickHouse, client_id: str, today: dt.date | None = None, anchor_day: int | None = None,
                      db: str = "ratewarden") -> dict[str, Any]:
    """Cost of the client's admitted requests today and this quota month (what quotas count)."""
    today = today or dt.datetime.now(dt.UTC).date()
    first = month_start(today, anchor_day)
    rows = _rows(client, f"""
        SELECT sumIf(cost, day = {{today:Date}}) AS day_used, sum(cost) AS month_used
        FROM {db}.usage_day
        WHERE client_id = {{client_id:String}} AND decision = 'allowed'
          AND day >= {{first:Date}} AND day <= {{today:Date}}""",
                 {"client_id": client_id, "today": today, "first": first})
    return {"client_id": client_id, "day": today.isoformat(), "month_start": first.isoformat(),
            "day_used": int(rows[0]["day_used"]), "month_used": int(rows[0]["month_used"])}


def alert_history(client: ClickHouse, start: dt.datetime, end: dt.datetime, client_id: str | None = None,
                  limit: int = 100, db: str = "ratewarden") -> list[dict[str, Any]]:
    """Alerts last seen in the range, newest first (the latest version of each)."""
    where = "AND client_id = {client_id:String}" if client_id else ""
    rows = _rows(client, f"""
        SELECT dedup_key, alert_type, severity, client_id, tier, window_start, first_seen, last_seen, occurrences,
               evidence, suggested_action, version
        FROM {db}.alerts FINAL
        WHERE last_seen >= {{start:DateTime('UTC')}} AND first_seen < {{end:DateTime('UTC')}} {where}
        ORDER BY last_seen DESC, dedup_key LIMIT {{limit:UInt32}}""",
                 {**_range(start, end), "client_id": client_id or "", "limit": limit})
    for row in rows:
        row["evidence"] = json.loads(row["evidence"])
    return rows


def penalty_history(client: ClickHouse, start: dt.datetime, end: dt.datetime, client_id: str | None = None,
                    limit: int = 100, db: str = "ratewarden") -> list[dict[str, Any]]:
    """Penalties created in the range, newest first."""
    where = "AND client_id = {client_id:String}" if client_id else ""
    return _rows(client, f"""
        SELECT penalty_id, client_id, action, tier, detector, reason, created_at, expires_at
        FROM {db}.penalties FINAL
        WHERE created_at >= {{start:DateTime('UTC')}} AND created_at < {{end:DateTime('UTC')}} {where}
        ORDER BY created_at DESC, penalty_id LIMIT {{limit:UInt32}}""",
                 {**_range(start, end), "client_id": client_id or "", "limit": limit})


def tier_rates(client: ClickHouse, start: dt.datetime, end: dt.datetime,
               db: str = "ratewarden") -> list[dict[str, Any]]:
    """Requests and denials per minute and tier (the console's live chart)."""
    return _rows(client, f"""
        SELECT window_start AS t, tier, sum(requests) AS requests, sumIf(requests, decision = 'denied') AS denied
        FROM {db}.usage_minute
        WHERE window_start >= {{start:DateTime('UTC')}} AND window_start < {{end:DateTime('UTC')}} AND client_id != ''
        GROUP BY t, tier ORDER BY t, tier""", _range(start, end))


CSV_COLUMNS = ["day", "client_id", "tier", "requests", "admitted", "denied", "billable_cost"]


def usage_csv(client: ClickHouse, start: dt.date, end: dt.date, db: str = "ratewarden") -> str:
    """Usage per client and day in ``[start, end)`` as CSV, for billing (cost of admitted requests)."""
    rows = _rows(client, f"""
        SELECT day, client_id, any(tier) AS tier, sum(requests) AS requests,
               sumIf(requests, decision = 'allowed') AS admitted, sumIf(requests, decision = 'denied') AS denied,
               sumIf(cost, decision = 'allowed') AS billable_cost
        FROM {db}.usage_day
        WHERE day >= {{start:Date}} AND day < {{end:Date}}
        GROUP BY day, client_id ORDER BY day, client_id""", {"start": start, "end": end})
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "day": row["day"].isoformat()})
    return out.getvalue()
