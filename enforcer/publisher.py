"""Publishing request events to Kafka without slowing requests or losing events silently.

The request path only appends the event to a bounded in-memory queue (or, when it is
full, writes it to the spill). A daemon thread wakes every 50 ms, encodes what is queued
and hands it to librdkafka (confluent-kafka's ``Producer``), whose own threads batch,
compress and send it, keyed by client id (murmur2, as Java and aiokafka partition, so
one client's events stay in order in one partition whichever producer wrote them). The
same thread serves librdkafka's delivery reports (one bound method, no per-event
future), watches Kafka's health and replays the spill.

While Kafka is unreachable, events go to the spill (disk); once it answers again the
spill is replayed oldest first and removed, and new events wait in a bounded queue
meanwhile. An event librdkafka could not deliver within the delivery timeout, or still
held at shutdown after the flush timeout, is spilled too: none stays in doubt. Only past
the spill cap are events dropped, and each drop is counted.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

import msgspec
from prometheus_client import Counter, Gauge

from ratewarden.extras import require

from .decision import Decision
from .events import RequestEvent, encode_event, encode_request
from .logs import get_logger
from .outage import OutageLog
from .settings import EnforcerSettings
from .spill import Spill

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message, Producer

__all__ = ["EventPublisher", "PublisherStats"]

log = get_logger("ratewarden.publisher")


class _EachFailedAttempt(logging.Filter):
    """Drops librdkafka's line per failed connection attempt ("FAIL ...", several a second for as long
    as Kafka is away): the publisher's outage log tells the outage once, naming the brokers and the
    setting, and its end. librdkafka's other lines pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("FAIL ")


_LIBRDKAFKA_LOG = logging.getLogger("ratewarden.publisher.librdkafka")
_LIBRDKAFKA_LOG.addFilter(_EachFailedAttempt())

_PUBLISHED = Counter("ratewarden_events_published", "Events delivered to Kafka")
_SPILLED = Counter("ratewarden_events_spilled", "Events written to the spill while Kafka was unreachable")
_REPLAYED = Counter("ratewarden_events_replayed", "Spilled events delivered later")
_DROPPED = Counter("ratewarden_events_dropped", "Events lost past the spill cap")
_QUEUE = Gauge("ratewarden_events_queue_depth", "Events waiting in memory")
_PROBE_TIMEOUT_S = 2.0  # a metadata request this slow counts as Kafka being away
_MAX_BACKOFF_S = 5.0
_SERVE_INTERVAL_S = 0.05  # delivery reports are served in batches this far apart


# a finished request whose event the sender thread builds: (decision, method, path, user agent,
# status, latency ms, service, instance, host time µs)
_Pending = tuple[Decision, str, str, str | None, int, float, str, str, int]


def _encoded(item: RequestEvent | _Pending) -> tuple[bytes, str]:
    """A queued item's Kafka value (the event's JSON) and key (its client id)."""
    if isinstance(item, RequestEvent):
        return encode_event(item), item.client_id
    decision, method, path, user_agent, status, latency_ms, service, instance, host_time_us = item
    identity = decision.identity
    assert identity is not None  # publish_decision takes only decisions made for a caller
    return encode_request(decision, identity, method, path, user_agent, status, latency_ms, service, instance,
                          host_time_us), identity.client_id


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
    ``start_thread()`` (WSGI), stop it with ``aclose()``/``close()`` (flushes, spills the rest)."""

    def __init__(self, settings: EnforcerSettings) -> None:
        if not settings.kafka_bootstrap:
            raise ValueError("no Kafka bootstrap servers configured (RATEWARDEN_KAFKA_BOOTSTRAP)")
        require("kafka", "confluent_kafka", feature="publishing events (RATEWARDEN_KAFKA_BOOTSTRAP is set)")
        self.settings = settings
        self.topic = settings.kafka_topic
        self._queue: deque[RequestEvent | _Pending] = deque()  # events waiting for the sender thread
        self._bound = settings.publish_queue_size
        self.spill = Spill(settings.spill_dir, settings.spill_max_bytes, settings.spill_segment_bytes)
        self.published = self.replayed = 0
        self._counted = 0  # of ``published``, what the Prometheus counter has
        self._producer: Producer | None = None
        self._failed: list[bytes] = []  # undelivered events, spilled after each round of delivery reports
        self._replay_pending = self._replay_failed = 0
        self._healthy = False
        # "kafka_unavailable" once per outage naming the brokers and their setting, then rarely
        self.outage = OutageLog(log, "kafka", server=settings.kafka_bootstrap, setting="RATEWARDEN_KAFKA_BOOTSTRAP",
                                spill=str(self.spill.directory))
        self._closing = False
        self._stopped = False
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        _QUEUE.set_function(self._depth)

    # -- request path ------------------------------------------------------

    def publish(self, event: RequestEvent) -> None:
        """Queue ``event``, or spill it when the queue is full (thread-safe, never blocks on Kafka)."""
        if len(self._queue) < self._bound and not self._stopped:
            self._queue.append(event)
        else:
            self._spill_lines((encode_event(event),))

    def publish_decision(self, decision: Decision, method: str, path: str, user_agent: str | None, status: int,
                         latency_ms: float, service: str, instance: str) -> None:
        """``publish(make_event(...))`` for a decided request (``decision.identity`` set), with the event
        built in the sender thread: the request pays for one tuple, not for the event's 26 fields."""
        item = (decision, method, path, user_agent, status, latency_ms, service, instance, int(time.time() * 1e6))
        if len(self._queue) < self._bound and not self._stopped:
            self._queue.append(item)
        else:
            self._spill_lines((_encoded(item)[0],))

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Start the sender thread (the ASGI app's lifespan calls this)."""
        self.start_thread()

    def start_thread(self) -> None:
        """Start the daemon thread that serves delivery reports, watches Kafka and replays the spill."""
        if self._thread is None:
            self._producer = self._new_producer()  # a bad setting fails here, in the caller
            self._thread = threading.Thread(target=self._run, name="ratewarden-publisher", daemon=True)
            self._thread.start()

    async def aclose(self) -> None:
        """Flush what is in flight (to Kafka, or to the spill if it does not answer in time) and stop."""
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self.settings.publish_flush_timeout_s + _PROBE_TIMEOUT_S + 5)
            self._thread = None

    @property
    def connected(self) -> bool:
        """True while Kafka answers."""
        return self._healthy

    def stats(self) -> PublisherStats:
        return PublisherStats(self.published, self.spill.written, self.replayed, self.spill.dropped, self._depth())

    def _depth(self) -> int:
        """Events in memory: queued here, or in librdkafka awaiting delivery."""
        producer = self._producer
        return len(self._queue) + (len(producer) if producer is not None else 0)

    # -- the sender thread -------------------------------------------------

    def _new_producer(self) -> Producer:
        from confluent_kafka import Producer

        s = self.settings
        return Producer({
            "bootstrap.servers": s.kafka_bootstrap,
            "client.id": f"ratewarden-{s.service_name}",
            # acks from every in-sync replica; no idempotent producer (Tansu refuses InitProducerId):
            # a retried or replayed event may arrive twice, and downstream deduplicates by event id
            "acks": "all",
            "enable.idempotence": False,
            # one request in flight per broker: a retry cannot overtake a later batch of the same client
            "max.in.flight.requests.per.connection": 1,
            "partitioner": "murmur2_random",  # what Java and aiokafka do with a key: the same client, same partition
            "compression.type": s.publish_compression,
            "linger.ms": s.publish_linger_ms,
            "batch.num.messages": s.publish_max_batch,
            "queue.buffering.max.messages": s.publish_queue_size,
            # undelivered by then: reported failed and spilled, so nothing waits in librdkafka for ever
            "message.timeout.ms": int(s.publish_delivery_timeout_s * 1000),
            "request.timeout.ms": int(min(5.0, s.publish_delivery_timeout_s) * 1000),
            "on_delivery": self._delivered,
            "error_cb": self._error,
            "logger": _LIBRDKAFKA_LOG,
            "log.connection.close": False,
        })

    def _run(self) -> None:
        producer = self._producer
        assert producer is not None
        backoff = 0.2
        try:
            while not self._closing:
                if not self._healthy:
                    self._go_away(producer)
                    if not self._probe(producer):
                        self._wake.wait(backoff)
                        backoff = min(backoff * 2, _MAX_BACKOFF_S)
                        continue
                    backoff = 0.2
                if self.spill.pending:  # new events wait in the queue behind the spill, which goes first
                    if not self._replay(producer):
                        continue
                self._drain(producer)
                self._wake.wait(_SERVE_INTERVAL_S)
                self._serve(producer, 0)
        except Exception as exc:  # noqa: BLE001 - the sender must never die silently; what is left is spilled
            log.error("publisher_failed", error=repr(exc))
        finally:
            self._shutdown(producer)

    def _serve(self, producer: Producer, timeout: float) -> None:
        """Deliver librdkafka's reports (our callbacks run here), then spill what failed."""
        producer.poll(timeout)
        _PUBLISHED.inc(self.published - self._counted)
        self._counted = self.published
        if self._failed:
            failed, self._failed = self._failed, []
            self._spill_lines(failed)

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        """librdkafka's delivery report for a live event (called from ``poll`` in the sender thread)."""
        if err is None:
            self.published += 1
            return
        value = msg.value()
        if value is not None:
            self._failed.append(value)
        self._mark_down(err)

    def _replay_delivered(self, err: KafkaError | None, msg: Message) -> None:
        """The delivery report for a replayed event: its segment stays until all of it is delivered."""
        self._replay_pending -= 1
        if err is not None:
            self._replay_failed += 1
            self._mark_down(err)

    def _error(self, err: KafkaError) -> None:
        from confluent_kafka import KafkaError

        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self._mark_down(err)

    def _mark_down(self, err: KafkaError) -> None:
        self.outage.failed(err.name())
        self._healthy = False

    def _probe(self, producer: Producer) -> bool:
        """Ask for the topic's metadata: True once Kafka answers with its partitions."""
        from confluent_kafka import KafkaException

        try:
            metadata = producer.list_topics(self.topic, timeout=_PROBE_TIMEOUT_S)
            topic = metadata.topics.get(self.topic)
            if topic is None or topic.error is not None or not topic.partitions:
                raise KafkaException(f"topic {self.topic} has no partitions")
        except KafkaException as exc:
            self.outage.failed(str(exc.args[0]))
            return False
        if not self.outage.down:
            log.info("kafka_connected", topic=self.topic)
        self.outage.succeeded()
        self._healthy = True
        return True

    def _go_away(self, producer: Producer) -> None:
        """Kafka is away: events not yet sent go to the spill (nothing waits in memory meanwhile)."""
        producer.purge(in_queue=True, in_flight=False, blocking=False)  # reported as failed: spilled below
        self._serve(producer, 0)
        self._spill_queue()

    def _drain(self, producer: Producer) -> None:
        """Encode the queued events and hand them to librdkafka, in one tight loop: interleaved with
        request handling the same calls cost the request loop several times as much (cold caches)."""
        queue, produce, topic = self._queue, producer.produce, self.topic
        while queue and self._healthy:
            item = queue.popleft()
            value, key = _encoded(item)
            try:
                produce(topic, value, key)
            except BufferError:  # librdkafka holds publish_queue_size already: Kafka is slow
                queue.appendleft(item)  # built again next time: one more event id, never a duplicate one
                self._serve(producer, _SERVE_INTERVAL_S)

    def _replay(self, producer: Producer) -> bool:
        """Send the oldest spill segment; True once all of it is delivered and the segment removed."""
        segment = self.spill.take_segment()
        if segment is None:
            return True
        self._replay_pending = self._replay_failed = 0
        sent = 0
        for line in self.spill.read(segment):
            try:
                key = _key_of(line).client_id
            except msgspec.DecodeError:
                self.spill.dropped += 1  # a line torn by a crash mid-write
                _DROPPED.inc()
                continue
            while True:
                if not self._healthy or self._closing:
                    return False  # the segment stays; what was sent will be duplicates, removed downstream by id
                try:
                    producer.produce(self.topic, line, key, on_delivery=self._replay_delivered)
                    break
                except BufferError:
                    self._serve(producer, _SERVE_INTERVAL_S)
            self._replay_pending += 1
            sent += 1
        while self._replay_pending and self._healthy and not self._closing:
            self._serve(producer, _SERVE_INTERVAL_S)
        if self._replay_pending or self._replay_failed:
            return False
        self.spill.done(segment)
        self.replayed += sent
        _REPLAYED.inc(sent)
        log.info("spill_replayed", events=sent, segment=segment.name)
        return True

    def _shutdown(self, producer: Producer) -> None:
        """Flush within the flush timeout; what is still undelivered then goes to the spill."""
        self._stopped = True
        if self._healthy:
            self._drain(producer)
            producer.flush(self.settings.publish_flush_timeout_s)
        # anything left is reported failed (_PURGE_*) to _delivered, which spills it; one purged
        # in flight may still land in Kafka too: a duplicate, removed downstream by event id
        producer.purge(in_queue=True, in_flight=True, blocking=False)
        producer.flush(0)
        self._serve(producer, 0)
        self._spill_queue()
        self.spill.close()
        self._healthy = False
        log.info("publisher_stopped", **msgspec.structs.asdict(self.stats()))

    # -- the spill ---------------------------------------------------------

    def _spill_lines(self, lines: Iterable[bytes]) -> None:
        before = self.spill.dropped
        kept = self.spill.write(lines)
        _SPILLED.inc(kept)
        _DROPPED.inc(self.spill.dropped - before)

    def _spill_queue(self) -> None:
        batch = []
        while self._queue:
            batch.append(_encoded(self._queue.popleft())[0])
        if batch:
            self._spill_lines(batch)
