"""Per-minute aggregates for ClickHouse: fold events into ``usage_minute`` rows and write
each batch once, however often a restarted worker writes it again."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from analytics.migrations import dedup_insert_settings
from enforcer.events import RequestEvent

__all__ = ["MinuteAggregator", "UsageRow", "write_usage", "USAGE_COLUMNS"]

USAGE_COLUMNS = ["window_start", "client_id", "tier", "route", "method", "status_class", "decision",
                 "requests", "cost", "latency_sum_ms", "latency_max_ms"]
Dimensions = tuple[int, str, str, str, str, str, str]  # minute, client, tier, route, method, status, decision


@dataclass
class UsageRow:
    requests: int = 0
    cost: int = 0
    latency_sum_ms: float = 0.0
    latency_max_ms: float = 0.0


class MinuteAggregator:
    """Per-minute usage by client, tier, route, method, status class and decision.

    Events seen twice (same ``event_id``: a replayed spill, a redelivered Kafka batch)
    count once. ``flush_before(minute)`` hands over the minutes that are complete.
    """

    def __init__(self) -> None:
        self.rows: dict[Dimensions, UsageRow] = {}
        self._seen: dict[int, set[str]] = {}  # minute -> event ids

    def add(self, event: RequestEvent) -> bool:
        """Fold one event in; False if it was a duplicate."""
        minute = event.decided_at_us // 60_000_000
        seen = self._seen.setdefault(minute, set())
        if event.event_id in seen:
            return False
        seen.add(event.event_id)
        key = (minute, event.client_id, event.tier, event.route, event.method, f"{event.status // 100}xx",
               "allowed" if event.allowed else "denied")
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = UsageRow()
        row.requests += 1
        row.cost += event.cost
        row.latency_sum_ms += event.latency_ms
        row.latency_max_ms = max(row.latency_max_ms, event.latency_ms)
        return True

    def flush_before(self, minute: int) -> dict[int, list[list[object]]]:
        """Remove and return complete minutes (< ``minute``) as rows per minute, in column order."""
        out: dict[int, list[list[object]]] = {}
        for key in sorted(k for k in self.rows if k[0] < minute):
            row = self.rows.pop(key)
            start = dt.datetime.fromtimestamp(key[0] * 60, dt.timezone.utc)
            out.setdefault(key[0], []).append([start, *key[1:], row.requests, row.cost,
                                               round(row.latency_sum_ms, 3), row.latency_max_ms])
        for done in [m for m in self._seen if m < minute]:
            del self._seen[done]
        return out


def write_usage(client: Client, rows: Iterable[list[object]], token: str, db: str = "ratewarden") -> None:
    """Insert one batch of rows; a repeat of the same ``token`` is a no-op (rollups included).

    The token must be deterministic for the batch, e.g. the minute plus the Kafka partition
    and offset range its events came from.
    """
    client.insert(f"{db}.usage_minute", list(rows), column_names=USAGE_COLUMNS, settings=dedup_insert_settings(token))
