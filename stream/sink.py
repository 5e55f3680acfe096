"""Per-minute aggregates for ClickHouse, written exactly once.

Events are folded per Kafka partition into ``usage_minute`` rows (client, tier, route,
method, status class, decision, the shadow rule that would have denied, if any, and the
rule and kind of a denial).
Every row carries its provenance: the partition it came from (``source``) and the last
offset the write covers (``source_offset``). Each partition's flush is one insert, one
block, so it lands whole or not at all; on start a worker reads the highest offset
written per partition and skips every event at or below it. A worker
killed at any moment therefore neither loses nor double-counts, whatever its committed
Kafka offsets say. The insert also carries a deterministic deduplication token, so a
retried insert that did land is dropped, rollups included.

Events seen twice with the same ``event_id`` (a publisher replaying a spill segment)
count once while their id is remembered (``dedup_window_s`` of event time).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from ratewarden.analytics.client import ClickHouse
from ratewarden.analytics.migrations import dedup_insert_settings
from ratewarden.enforcer.events import RequestEvent

from .windows import status_class

__all__ = ["MinuteAggregator", "UsageRow", "UsageSink", "USAGE_COLUMNS", "write_usage", "written_offsets"]

USAGE_COLUMNS = ["window_start", "client_id", "tier", "route", "method", "status_class", "decision",
                 "shadow_rule", "deny_rule", "deny_kind", "requests", "cost", "latency_sum_ms", "latency_max_ms",
                 "source", "source_offset"]
# minute, client, tier, route, method, status, decision, shadow rule, denying rule, denial kind
Dimensions = tuple[int, str, str, str, str, str, str, str, str, str]


@dataclass
class UsageRow:
    requests: int = 0
    cost: int = 0
    latency_sum_ms: float = 0.0
    latency_max_ms: float = 0.0


class MinuteAggregator:
    """Per-minute usage by client, tier, route, method, status class, decision, shadow rule and
    (denied requests) the rule and kind that denied.

    An event whose ``event_id`` was seen within ``dedup_window_s`` (event time) counts once.
    """

    def __init__(self, dedup_window_s: float = 180.0) -> None:
        self.rows: dict[Dimensions, UsageRow] = {}
        self._seen: dict[int, set[str]] = {}  # minute -> event ids
        self._keep_minutes = max(1, int(dedup_window_s // 60) + 1)

    def add(self, event: RequestEvent) -> bool:
        """Fold one event in; False if it was a duplicate."""
        minute = event.decided_at_us // 60_000_000
        seen = self._seen.get(minute)
        if seen is None:
            seen = self._seen[minute] = set()
            self._forget_before(minute - self._keep_minutes)
        if event.event_id in seen:
            return False
        seen.add(event.event_id)
        key = (minute, event.client_id, event.tier, event.route, event.method, status_class(event.status),
               "allowed" if event.allowed else "denied", event.shadow_denied or "",
               "" if event.allowed else event.rule or "", "" if event.allowed else event.kind or "")
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = UsageRow()
        row.requests += 1
        row.cost += event.cost
        row.latency_sum_ms += event.latency_ms
        if event.latency_ms > row.latency_max_ms:
            row.latency_max_ms = event.latency_ms
        return True

    def _forget_before(self, minute: int) -> None:
        newest = max(self._seen)
        for old in [m for m in self._seen if m < minute and m != newest]:
            del self._seen[old]

    def drain(self) -> list[list[object]]:
        """Remove and return every row folded so far, in column order (without provenance)."""
        out = []
        for key, row in self.rows.items():
            start = dt.datetime.fromtimestamp(key[0] * 60, dt.UTC)
            out.append([start, *key[1:], row.requests, row.cost, round(row.latency_sum_ms, 3), row.latency_max_ms])
        self.rows = {}
        return out


@dataclass
class _PartitionUsage:
    aggregator: MinuteAggregator
    written_through: int  # highest offset already in ClickHouse (-1: none)
    first_pending: int | None = None
    last_pending: int | None = None


@dataclass
class _Block:
    """One partition's rows of one flush: written whole, or kept to retry as they are."""

    rows: list[list[object]]
    markers: list[list[object]]
    token: str
    first: int
    last: int


@dataclass
class UsageSink:
    """Usage of many partitions of one topic, flushed to ClickHouse as one block per flush."""

    client: ClickHouse
    topic: str
    database: str = "ratewarden"
    dedup_window_s: float = 180.0
    partitions: dict[int, _PartitionUsage] = field(default_factory=dict)
    _unwritten: dict[int, _Block] = field(default_factory=dict)

    def assign(self, partitions: list[int]) -> None:
        """Start tracking ``partitions``, resuming after what ClickHouse already holds."""
        written = written_offsets(self.client, self.topic, self.database)
        for partition in partitions:
            self.partitions[partition] = _PartitionUsage(MinuteAggregator(self.dedup_window_s),
                                                         written.get(partition, -1))

    def revoke(self, partitions: list[int]) -> None:
        """Stop tracking ``partitions``; what was not written is dropped (their next owner
        replays it from the committed offset, which never passed it)."""
        for partition in partitions:
            self.partitions.pop(partition, None)
            self._unwritten.pop(partition, None)

    def written_through(self, partition: int) -> int:
        return self.partitions[partition].written_through

    def add(self, partition: int, offset: int, event: RequestEvent) -> bool:
        """Fold in the event at ``offset``; False if it is already written or a duplicate."""
        usage = self.partitions[partition]
        if offset <= usage.written_through:
            return False
        if usage.first_pending is None:
            usage.first_pending = offset
        usage.last_pending = offset
        return usage.aggregator.add(event)

    def skip(self, partition: int, offset: int) -> None:
        """Mark ``offset`` as handled without an event (a malformed record sent to the dead letters)."""
        usage = self.partitions[partition]
        if offset > usage.written_through:
            usage.first_pending = offset if usage.first_pending is None else usage.first_pending
            usage.last_pending = offset

    def first_unwritten(self, partition: int) -> int | None:
        """The earliest offset folded in but not yet in ClickHouse (commits must stay at or before it)."""
        block = self._unwritten.get(partition)
        if block is not None:
            return block.first
        usage = self.partitions.get(partition)
        return usage.first_pending if usage else None

    def flush(self, partitions: list[int] | None = None) -> int:
        """Write what ``partitions`` (default all) hold, one insert per partition; returns the rows written.

        A block whose insert fails is kept and retried, alone and with the same deduplication
        token, before anything newer of its partition: whether or not the failed attempt
        landed, it counts once. The error is raised after every partition was tried.
        """
        written, error = 0, None
        for partition in sorted(partitions if partitions is not None else self.partitions):
            usage = self.partitions.get(partition)
            if usage is None:
                continue
            block = self._unwritten.pop(partition, None) or self._take_block(partition, usage)
            if block is None:
                continue
            try:
                self._write(block)
            except Exception as exc:  # noqa: BLE001 - any failure: keep the block, try the others
                self._unwritten[partition] = block
                error = exc
                continue
            usage.written_through = max(usage.written_through, block.last)
            written += len(block.rows)
        if error is not None:
            raise error
        return written

    def _take_block(self, partition: int, usage: _PartitionUsage) -> _Block | None:
        if usage.last_pending is None:
            return None
        assert usage.first_pending is not None  # add() and skip() set it with last_pending, cleared together below
        source = f"{self.topic}/{partition}"
        rows = [[*row, source, usage.last_pending] for row in usage.aggregator.drain()]
        block = _Block(rows, [] if rows else [[source, usage.last_pending]],  # no rows: record the offsets alone
                       f"{source}|{usage.first_pending}-{usage.last_pending}", usage.first_pending, usage.last_pending)
        usage.first_pending = usage.last_pending = None
        return block

    def _write(self, block: _Block) -> None:
        if block.rows:
            write_usage(self.client, block.rows, token=block.token, db=self.database)
        if block.markers:
            self.client.insert(f"{self.database}.sink_offsets", block.markers, column_names=["source", "source_offset"],
                               settings=dedup_insert_settings(block.token))


def written_offsets(client: ClickHouse, topic: str, db: str = "ratewarden") -> dict[int, int]:
    """The highest source offset written per partition of ``topic``."""
    result = client.query(
        f"SELECT source, max(source_offset) FROM (SELECT source, source_offset FROM {db}.usage_minute "
        f"UNION ALL SELECT source, source_offset FROM {db}.sink_offsets) "
        "WHERE startsWith(source, {prefix:String}) GROUP BY source", parameters={"prefix": f"{topic}/"})
    return {int(source.rsplit("/", 1)[1]): int(offset) for source, offset in result.result_rows}


def write_usage(client: ClickHouse, rows: list[list[object]], token: str, db: str = "ratewarden") -> None:
    """Insert one batch of rows; a repeat of the same ``token`` is a no-op (rollups included)."""
    client.insert(f"{db}.usage_minute", rows, column_names=USAGE_COLUMNS, settings=dedup_insert_settings(token))
