"""Publishing request events to Kafka without slowing requests or losing events silently.

The request path only appends to a bounded in-memory queue (or, when it is full,
to the spill file). A background sender, an asyncio task in ASGI apps or a daemon
thread with its own loop in WSGI apps, batches events by partition (keyed by
client, so one client's events stay in order in one partition) and sends them
with aiokafka. While Kafka is unreachable everything goes to the spill; once it
answers again the spill is replayed oldest first and removed. Only past the
spill cap are events dropped, and each drop is counted.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

import msgspec
from prometheus_client import Counter, Gauge

from ratewarden.extras import require

from .events import RequestEvent, encode_event
from .logs import get_logger
from .settings import EnforcerSettings
from .spill import Spill

__all__ = ["EventPublisher", "PublisherStats"]

log = get_logger("ratewarden.publisher")

_PUBLISHED = Counter("ratewarden_events_published", "Events delivered to Kafka")
_SPILLED = Counter("ratewarden_events_spilled", "Events written to the spill while Kafka was unreachable")
_REPLAYED = Counter("ratewarden_events_replayed", "Spilled events delivered later")
_DROPPED = Counter("ratewarden_events_dropped", "Events lost past the spill cap")
_QUEUE = Gauge("ratewarden_events_queue_depth", "Events waiting in memory")
_KAFKA_REQUEST_TIMEOUT_S = 5.0  # aiokafka expires an undelivered batch after this...
_SEND_TIMEOUT_S = 3 * _KAFKA_REQUEST_TIMEOUT_S  # ...well before we stop waiting, so no batch is in doubt
_MAX_BACKOFF_S = 5.0


class _Keyed(msgspec.Struct):
    client_id: str


_key_of = msgspec.json.Decoder(_Keyed).decode


class PublisherStats(msgspec.Struct):
    published: int = 0
    spilled: int = 0
    replayed: int = 0
    dropped: int = 0
    queue_depth: int = 0


class EventPublisher:
    """Sends :class:`RequestEvent` s to ``settings.kafka_topic``. ``publish`` is the only
    call on the request path; start the sender with ``await start()`` (asyncio) or
    ``start_thread()`` (WSGI), stop it with ``aclose()``/``close()`` (flushes)."""

    def __init__(self, settings: EnforcerSettings) -> None:
        if not settings.kafka_bootstrap:
            raise ValueError("no Kafka bootstrap servers configured (RATEWARDEN_KAFKA_BOOTSTRAP)")
        require("kafka", "aiokafka", feature="publishing events (RATEWARDEN_KAFKA_BOOTSTRAP is set)")
        self.settings = settings
        self.topic = settings.kafka_topic
        self._queue: deque[RequestEvent] = deque()
        self._bound = settings.publish_queue_size
        self.spill = Spill(settings.spill_dir, settings.spill_max_bytes, settings.spill_segment_bytes)
        self.published = self.replayed = 0
        self._producer: Any = None
        self._partition_of: dict[bytes, int] = {}  # key -> partition, for the current partition count
        self._partition_count = 0
        self._healthy = False
        self._reported_down = False
        self._closing = False
        self._task: asyncio.Task | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        _QUEUE.set_function(lambda: len(self._queue))

    # -- request path ------------------------------------------------------

    def publish(self, event: RequestEvent) -> None:
        """Queue ``event`` (thread-safe, never blocks on Kafka)."""
        if len(self._queue) < self._bound:
            self._queue.append(event)
        else:
            self._spill_events((event,))

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Run the sender as a task of the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def start_thread(self) -> None:
        """Run the sender in a daemon thread with its own event loop."""
        if self._thread is None:
            ready = threading.Event()

            def run() -> None:
                self._loop = asyncio.new_event_loop()
                self._task = self._loop.create_task(self._run())
                ready.set()
                self._loop.run_until_complete(self._task)

            self._thread = threading.Thread(target=run, name="ratewarden-publisher", daemon=True)
            self._thread.start()
            ready.wait()

    async def aclose(self) -> None:
        """Flush what is queued (to Kafka, or to the spill if it is away) and stop."""
        self._closing = True
        if self._task is not None:
            await self._task
            self._task = None

    def close(self) -> None:
        self._closing = True
        if self._thread is not None:
            self._thread.join(_SEND_TIMEOUT_S + 5)
            self._thread = None

    @property
    def connected(self) -> bool:
        """True while the sender has a working connection to Kafka."""
        return self._healthy

    def stats(self) -> PublisherStats:
        return PublisherStats(self.published, self.spill.written, self.replayed, self.spill.dropped, len(self._queue))

    # -- sending -----------------------------------------------------------

    def _spill_events(self, events: Iterable[RequestEvent]) -> None:
        before = self.spill.dropped
        kept = self.spill.write(encode_event(e) for e in events)
        _SPILLED.inc(kept)
        _DROPPED.inc(self.spill.dropped - before)

    def _spill_queue(self) -> None:
        batch = []
        while self._queue:
            batch.append(self._queue.popleft())
        if batch:
            self._spill_events(batch)

    async def _run(self) -> None:
        backoff = 0.2
        try:
            while True:
                if not self._healthy and not await self._connect():
                    self._spill_queue()  # nothing waits in memory while Kafka is away
                    if self._closing:
                        return
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, _MAX_BACKOFF_S)
                    continue
                backoff = 0.2
                if self.spill.pending and not await self._replay():
                    continue
                batch = self._drain()
                if batch:
                    if not await self._send([(e.client_id.encode(), encode_event(e)) for e in batch]):
                        self._spill_events(batch)
                        continue
                    self.published += len(batch)
                    _PUBLISHED.inc(len(batch))
                elif self._closing:
                    return
                else:
                    await asyncio.sleep(self.settings.publish_linger_ms / 1000)
        finally:
            self._spill_queue()
            self.spill.close()
            if self._producer is not None:
                try:
                    await asyncio.wait_for(self._producer.stop(), _SEND_TIMEOUT_S)
                except Exception:  # noqa: BLE001 - shutting down; the spill holds what was not sent
                    pass
            log.info("publisher_stopped", **msgspec.structs.asdict(self.stats()))

    def _drain(self) -> list[RequestEvent]:
        batch = []
        queue = self._queue
        for _ in range(min(len(queue), self.settings.publish_max_batch)):
            batch.append(queue.popleft())
        return batch

    async def _connect(self) -> bool:
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        if self._producer is not None:
            try:
                await asyncio.wait_for(self._producer.stop(), 2)
            except Exception:  # noqa: BLE001 - replacing a broken producer
                pass
        compression = None if self.settings.publish_compression == "none" else self.settings.publish_compression
        # acks=all, and no idempotent producer: Tansu refuses InitProducerId; duplicates go by event id
        self._producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap, acks="all",
                                          enable_idempotence=False, compression_type=compression,
                                          request_timeout_ms=int(_KAFKA_REQUEST_TIMEOUT_S * 1000))
        try:
            await asyncio.wait_for(self._producer.start(), _SEND_TIMEOUT_S)
            partitions = await asyncio.wait_for(self._producer.partitions_for(self.topic), _SEND_TIMEOUT_S)
            if not partitions:
                raise KafkaError(f"topic {self.topic} has no partitions")
        except (TimeoutError, KafkaError, OSError) as exc:
            if not self._reported_down:
                log.warning("kafka_unavailable", error=type(exc).__name__, spill=str(self.spill.directory))
                self._reported_down = True
            self._healthy = False
            return False
        log.info("kafka_connected", topic=self.topic)
        self._healthy, self._reported_down = True, False
        return True

    async def _send(self, records: list[tuple[bytes, bytes]]) -> bool:
        """Send (key, value) records in one batch per partition; False if Kafka failed."""
        from aiokafka.errors import KafkaError
        from aiokafka.partitioner import murmur2

        producer = self._producer
        try:
            partitions = sorted(await asyncio.wait_for(producer.partitions_for(self.topic), _SEND_TIMEOUT_S))
            if len(partitions) != self._partition_count or len(self._partition_of) > 100_000:
                self._partition_of, self._partition_count = {}, len(partitions)
            partition_of = self._partition_of
            by_partition: dict[int, Any] = {}
            waits = []
            for key, value in records:
                partition = partition_of.get(key)
                if partition is None:  # Kafka's default partitioner (murmur2), computed once per client
                    partition = partition_of[key] = partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
                batch = by_partition.get(partition)
                if batch is None:
                    batch = by_partition[partition] = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
                    batch.close()
                    waits.append(await producer.send_batch(batch, self.topic, partition=partition))
                    batch = by_partition[partition] = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            for partition, batch in by_partition.items():
                batch.close()
                waits.append(await producer.send_batch(batch, self.topic, partition=partition))
            await asyncio.wait_for(asyncio.gather(*waits), _SEND_TIMEOUT_S)
            return True
        except (TimeoutError, KafkaError, OSError) as exc:
            log.warning("kafka_send_failed", error=type(exc).__name__, events=len(records))
            self._healthy = False
            return False

    async def _replay(self) -> bool:
        """Send the oldest spill segment; True once it is delivered and removed."""
        segment = self.spill.take_segment()
        if segment is None:
            return True
        records = []
        for line in self.spill.read(segment):
            try:
                records.append((_key_of(line).client_id.encode(), line))
            except msgspec.DecodeError:
                self.spill.dropped += 1  # a line torn by a crash mid-write
                _DROPPED.inc()
        for start in range(0, len(records), self.settings.publish_max_batch):
            if not await self._send(records[start:start + self.settings.publish_max_batch]):
                return False  # the segment stays; sent events will be duplicates, removed downstream by id
        self.spill.done(segment)
        self.replayed += len(records)
        _REPLAYED.inc(len(records))
        log.info("spill_replayed", events=len(records), segment=segment.name)
        return True
