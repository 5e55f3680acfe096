"""Stage one of the worker: request events in, usage and window summaries out.

Reads ``ratewarden.requests`` in large batches (the per-event work is a decode and a few
dictionary updates, which is what lets one process keep up with tens of thousands of
events a second), and per partition:

- folds events into per-minute usage, written to ClickHouse every ``flush_interval_s``
  exactly once (see :mod:`ratewarden.stream.sink`);
- folds them into tumbling and hopping windows; closed windows the detectors need (every
  full usage window, and the short ones a detector would flag: see
  :class:`~ratewarden.stream.detection.Screen`) go as compact summaries keyed by client to
  ``ratewarden.windows``, where the detectors (stage two) read them;
- sends every record that is not a valid event to the dead-letter topic with the reason,
  and carries on.

Offsets are committed only up to the first event an open window still needs, so a
restarted worker rebuilds its open windows by replaying them; the sink skips what it has
already written.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from ratewarden.analytics.client import ClickHouse, default_url, where
from ratewarden.enforcer.events import RequestEvent, decode_event
from ratewarden.enforcer.logs import get_logger
from ratewarden.enforcer.outage import OutageLog

from . import metrics
from .detection import Screen
from .settings import StreamSettings
from .sink import UsageSink
from .windows import Window, WindowAccumulator, encode_summary, summary_key

__all__ = ["RequestProcessor", "ProcessorStats"]

log = get_logger("ratewarden.stream")
DELAY_SAMPLE = 100


@dataclass
class ProcessorStats:
    """Totals since the processor started (logged in ``progress`` lines and at stop)."""

    events: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    windows_emitted: int = 0
    rows_written: int = 0
    flushes: int = 0
    last_event_decided_at_us: int = 0


@dataclass
class _PartitionState:
    accumulators: list[WindowAccumulator]
    watermark_us: int = 0
    next_offset: int | None = None  # after the last record handled
    last_event_wall: float = field(default_factory=time.monotonic)


class RequestProcessor:
    """Consumes request events for its share of partitions until stopped."""

    def __init__(self, settings: StreamSettings, clickhouse: ClickHouse, producer: AIOKafkaProducer) -> None:
        self.settings = settings
        self.producer = producer
        epoch = settings.kafka_topic_epoch  # what ClickHouse holds of an earlier life of the topic is not this one's
        source = f"{settings.kafka_topic}@{epoch}" if epoch else settings.kafka_topic
        self.sink = UsageSink(clickhouse, source, settings.clickhouse_database, settings.dedup_window_s)
        self.stats = ProcessorStats()
        self.screen = Screen(settings)
        self._partitions: dict[int, _PartitionState] = {}
        self._dead_letters: list[tuple[bytes | None, bytes | None, str, int, int]] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._delay_samples: list[int] = []  # production timestamps (ms) of 1 record in DELAY_SAMPLE
        self._reported = ProcessorStats()
        self.clickhouse_outage = OutageLog(log, "clickhouse", setting="RATEWARDEN_CLICKHOUSE_URL",
                                           server=where(settings.clickhouse_url or default_url()))
        self._stopping = asyncio.Event()

    # -- partitions -------------------------------------------------------------------

    def _new_state(self) -> _PartitionState:
        s = self.settings
        routes = tuple(s.auth_routes)
        return _PartitionState([WindowAccumulator(s.window_s, routes),
                                WindowAccumulator(s.short_window_s, routes, hop_s=s.short_hop_s)])

    async def assigned(self, partitions: list[int]) -> None:
        """Start on ``partitions``: no record of theirs is taken from Kafka before the sink knows
        what ClickHouse already holds (the consumer fetches them only once they are resumed)."""
        tps = [TopicPartition(self.settings.kafka_topic, p) for p in partitions]
        consumer = self._consumer
        if consumer is not None:
            consumer.pause(*tps)  # before the first await: the client has fetched nothing for them yet
        await asyncio.to_thread(self.sink.assign, partitions)
        for partition in partitions:
            self._partitions[partition] = self._new_state()
        if consumer is not None:
            consumer.resume(*[tp for tp in tps if tp in consumer.assignment()])
        log.info("partitions_assigned", partitions=partitions,
                 written_through={p: self.sink.written_through(p) for p in partitions})

    async def revoked(self, partitions: list[int]) -> None:
        """Hand ``partitions`` over: write and commit what is safe to, then forget their windows."""
        mine = [p for p in partitions if p in self._partitions]
        if not mine:
            return
        await self.flush(mine, close_all=False)
        self.sink.revoke(mine)
        for partition in mine:
            del self._partitions[partition]
            try:
                metrics.LAG.remove(str(partition))
            except KeyError:  # never reported
                pass
        log.info("partitions_revoked", partitions=mine)

    # -- records ----------------------------------------------------------------------

    def handle(self, partition: int, records: list) -> None:
        """Fold a batch of records of one partition in (no I/O)."""
        state = self._partitions[partition]
        sink_add = self.sink.add
        minute, short = state.accumulators
        stats = self.stats
        watermark = state.watermark_us
        for record in records:
            try:
                event: RequestEvent = decode_event(record.value)
            except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as exc:
                self._dead_letters.append((record.key, record.value, str(exc)[:500], partition, record.offset))
                self.sink.skip(partition, record.offset)
                continue
            if not sink_add(partition, record.offset, event):
                stats.duplicates += 1
            minute.add(event, record.offset)
            short.add(event, record.offset)
            if event.decided_at_us > watermark:
                watermark = event.decided_at_us
        if records:
            self._delay_samples += [r.timestamp for r in records[::DELAY_SAMPLE]]
            stats.events += len(records)
            state.watermark_us = watermark
            state.next_offset = records[-1].offset + 1
            state.last_event_wall = time.monotonic()
            stats.last_event_decided_at_us = max(stats.last_event_decided_at_us, watermark)

    def _close_windows(self, state: _PartitionState, close_all: bool) -> list[Window]:
        closed: list[Window] = []
        idle = time.monotonic() - state.last_event_wall >= self.settings.idle_close_s
        for accumulator in state.accumulators:
            if close_all or idle:
                closed += accumulator.close_all()
            else:
                closed += accumulator.close_ended_by(state.watermark_us / 1_000_000 - self.settings.allowed_lateness_s)
        closed.sort(key=lambda w: (w.window_start, w.window_s))
        return closed

    def _commit_offset(self, partition: int, state: _PartitionState) -> int | None:
        """Where a restart must resume: the first event an open window or an unwritten row needs."""
        needed = [a.first_open_offset() for a in state.accumulators] + [self.sink.first_unwritten(partition)]
        needed += [offset for _, _, _, p, offset in self._dead_letters if p == partition]
        first_needed = min((o for o in needed if o is not None), default=None)
        return first_needed if first_needed is not None else state.next_offset

    # -- output -----------------------------------------------------------------------

    async def flush(self, partitions: list[int] | None = None, close_all: bool = False) -> None:
        """Write usage, emit closed windows and dead letters, then commit what is safe to."""
        partitions = list(self._partitions) if partitions is None else partitions
        try:
            self.stats.rows_written += await asyncio.to_thread(self.sink.flush, partitions)
        except Exception as exc:  # noqa: BLE001 - ClickHouse away: keep the rows, retry next flush
            self.clickhouse_outage.failed(exc)
        else:
            self.clickhouse_outage.succeeded()
        await self._send_dead_letters()
        commits = {}
        summaries: list[tuple[bytes, bytes]] = []
        for partition in partitions:
            state = self._partitions[partition]
            for window in self._close_windows(state, close_all):
                summary = window.summary()
                if self.screen.wanted(summary):
                    summaries.append((summary_key(summary).encode(), encode_summary(summary)))
            offset = self._commit_offset(partition, state)
            if offset is not None:
                commits[TopicPartition(self.settings.kafka_topic, partition)] = offset
        try:
            await self._send_summaries_then_commit(summaries, commits)
        except (TimeoutError, KafkaError) as exc:  # Kafka away, slow or rebalancing: the next flush commits
            log.warning("kafka_write_failed", error=type(exc).__name__, window_summaries=len(summaries))
        self.stats.flushes += 1
        self._report()

    async def _send_summaries_then_commit(self, summaries: list[tuple[bytes, bytes]],
                                          commits: dict[TopicPartition, int]) -> None:
        """Send window summaries, then commit offsets, each bounded by ``kafka_timeout_s``: a broker
        that stops answering delays commits and detection, never the ClickHouse writes."""
        timeout = self.settings.kafka_timeout_s
        sends = [await self.producer.send(self.settings.windows_topic, value, key=key) for key, value in summaries]
        await asyncio.wait_for(asyncio.shield(asyncio.gather(*sends)), timeout)  # unsent ones keep trying
        self.stats.windows_emitted += len(summaries)
        if commits and self._consumer is not None:
            await asyncio.wait_for(self._consumer.commit(commits), timeout)

    async def _send_dead_letters(self) -> None:
        """Send the records that were not events; those Kafka refuses now wait for the next flush."""
        unsent = []
        for record in self._dead_letters:
            key, value, reason, partition, offset = record
            source = f"{self.settings.kafka_topic}/{partition}@{offset}"
            headers = [("reason", reason.encode()), ("source", source.encode())]
            try:
                await (await self.producer.send(self.settings.dead_letter_topic, value or b"", key=key,
                                                headers=headers))
                self.stats.dead_letters += 1
            except KafkaError:
                unsent.append(record)
        self._dead_letters = unsent

    def _report(self) -> None:
        """Move what happened since the last flush into the Prometheus metrics."""
        now_ms = time.time() * 1000
        for produced_ms in self._delay_samples:
            metrics.DELAY.observe(max(0.0, now_ms - produced_ms) / 1000)
        self._delay_samples.clear()
        s, r = self.stats, self._reported
        metrics.EVENTS.inc(s.events - r.events)
        metrics.DUPLICATES.inc(s.duplicates - r.duplicates)
        metrics.DEAD_LETTERS.inc(s.dead_letters - r.dead_letters)
        metrics.WINDOWS.inc(s.windows_emitted - r.windows_emitted)
        metrics.ROWS.inc(s.rows_written - r.rows_written)
        self._reported = replace(s)

    # -- loop -------------------------------------------------------------------------

    def consumer(self) -> AIOKafkaConsumer:
        """A consumer of the request topic in the workers' group, committing only by hand."""
        s = self.settings
        return AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap, group_id=f"{s.consumer_group}-requests",
                                session_timeout_ms=int(s.rebalance_timeout_s * 1000),
                                rebalance_timeout_ms=int(s.rebalance_timeout_s * 1000),
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_poll_records=s.max_poll_records, fetch_max_bytes=64 * 2**20,
                                max_partition_fetch_bytes=16 * 2**20)

    async def run(self) -> None:
        """Consume until :meth:`stop`; flushes and commits on the way out."""
        processor = self

        class Listener(ConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
                await processor.revoked([tp.partition for tp in revoked])

            async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
                await processor.assigned([tp.partition for tp in assigned])

        consumer = self._consumer = self.consumer()
        await consumer.start()
        consumer.subscribe([self.settings.kafka_topic], listener=Listener())
        next_flush = time.monotonic() + self.settings.flush_interval_s
        next_progress = time.monotonic() + self.settings.progress_log_s
        try:
            while not self._stopping.is_set():
                timeout = max(0.0, next_flush - time.monotonic())
                batches = await consumer.getmany(timeout_ms=int(timeout * 1000) + 1)
                for tp, records in batches.items():
                    if tp.partition in self._partitions:
                        self.handle(tp.partition, records)
                    elif tp in consumer.assignment():  # never dropped: read again once the partition is ready
                        log.warning("records_before_assignment", partition=tp.partition, records=len(records))
                        consumer.seek(tp, records[0].offset)
                if time.monotonic() >= next_flush:
                    await self.flush()
                    next_flush = time.monotonic() + self.settings.flush_interval_s
                if time.monotonic() >= next_progress:
                    self._log_progress()
                    next_progress = time.monotonic() + self.settings.progress_log_s
            await self.flush()
        finally:
            self._consumer = None
            await consumer.stop()

    def lag(self) -> dict[int, int | None]:
        """Records behind the broker's last known end, per owned partition (None: not fetched yet)."""
        consumer = self._consumer
        if consumer is None:
            return {}
        assigned = consumer.assignment()  # highwater() asserts on a partition a rebalance just took away
        lags: dict[int, int | None] = {}
        for partition, state in sorted(self._partitions.items()):
            tp = TopicPartition(self.settings.kafka_topic, partition)
            end = consumer.highwater(tp) if tp in assigned else None
            lags[partition] = None if end is None or state.next_offset is None else max(0, end - state.next_offset)
        return lags

    def _log_progress(self) -> None:
        lags = self.lag()
        for partition, behind in lags.items():
            if behind is not None:
                metrics.LAG.labels(partition=str(partition)).set(behind)
        s = self.stats
        log.info("progress", partitions=list(lags), lag=lags, events=s.events, rows_written=s.rows_written,
                 windows_emitted=s.windows_emitted, dead_letters=s.dead_letters,
                 clickhouse_down=self.clickhouse_outage.down)

    def stop(self) -> None:
        """Ask :meth:`run` to end after its current fetch, with a last flush."""
        self._stopping.set()
