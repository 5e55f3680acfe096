"""The Faust app behind ``ratewarden worker``.

Two stages, scaled together by running more workers (partitions decide parallelism):

1. :class:`~ratewarden.stream.processor.RequestProcessor` (run by :class:`Pipeline`, a service
   of the app) reads ``ratewarden.requests`` in large batches: usage to ClickHouse exactly once,
   closed window summaries to ``ratewarden.windows``, undecodable records to the dead letters.
2. Faust agents: ``detect`` runs the registered detectors over each summary with their state in
   Faust tables (recovered from their changelogs on restart, swept of stale entries on each
   tick), records alerts in ClickHouse, penalises as configured, and publishes new alerts to
   ``ratewarden.alerts``; ``deliver`` sends those to Slack and webhooks, each within the
   delivery deadline, and puts what a sink did not take on the undeliverable topic.

:class:`Pipeline` also removes lapsed overrides from the enforcers' Redis on a timer.

The split is deliberate: a Faust stream costs ~80 microseconds per record on these
machines (about 12,000 records/s per process), too slow for raw request events but ample
for window summaries, of which there are a few per client per minute.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, cast

import faust
import msgspec
import redis
from aiokafka import AIOKafkaProducer
from mode import Service
from redis.exceptions import RedisClusterException

from ratewarden.analytics.client import ClickHouse, Serialized, connect
from ratewarden.analytics.migrations import migrate
from ratewarden.enforcer.logs import get_logger

from . import metrics
from .alerts import AlertRecord, write_alerts
from .delivery import AlertDeliverer
from .detection import Detection, state_tables
from .penalties import Penalty, PenaltyBox, write_penalties
from .processor import RequestProcessor
from .settings import StreamSettings
from .state import TICK_KEY
from .topics import ensure_topics, worker_topics
from .upkeep import OverridePurger
from .windows import decode_summary

__all__ = ["create_app", "Pipeline"]

log = get_logger("ratewarden.stream")


class Pipeline(Service):
    """One worker's resources and stage one; the agents wait for :attr:`ready` before using it.
    ``clickhouse``: a client to share (the admin API's, when the worker hosts it); without it,
    one for ``settings.clickhouse_url`` is made at start."""

    def __init__(self, settings: StreamSettings, clickhouse: ClickHouse | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.ready = asyncio.Event()
        self.clickhouse = clickhouse
        self.producer: AIOKafkaProducer | None = None
        self.processor: RequestProcessor | None = None
        self.penalties = PenaltyBox(settings)
        self.deliverer = AlertDeliverer(settings)
        self.purger = OverridePurger(lambda: self.penalties.store, settings.override_purge_interval_s)
        self._unwritten_alerts: list[AlertRecord] = []
        self._unwritten_penalties: list[Penalty] = []

    async def on_start(self) -> None:
        s = self.settings
        await ensure_topics(s.kafka_bootstrap, worker_topics(s), s.topic_replication_factor)
        if self.clickhouse is None:
            self.clickhouse = Serialized(await asyncio.to_thread(connect, s.clickhouse_url))
        applied = await asyncio.to_thread(migrate, self.clickhouse, s.clickhouse_database)
        log.info("clickhouse_ready", migrations_applied=[m.version for m in applied])
        self.producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all", enable_idempotence=False,
                                         linger_ms=20)
        await self.producer.start()
        if s.worker_metrics_address:
            metrics.serve(s.worker_metrics_address)
        self.processor = RequestProcessor(s, self.clickhouse, self.producer)
        self.add_future(self.processor.run())
        await self.add_runtime_dependency(self.purger)
        self.ready.set()

    async def on_stop(self) -> None:
        if self.processor is not None:
            self.processor.stop()
            await asyncio.sleep(0)
        await self.deliverer.close()

    async def on_shutdown(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
        stats = self.processor.stats if self.processor else None
        log.info("worker_stopped", stats=msgspec.to_builtins(stats) if stats else None,
                 alerts_delivered=self.deliverer.delivered, delivery_retries=self.deliverer.retries,
                 alerts_refused=self.deliverer.refused, alerts_expired=self.deliverer.expired,
                 overrides_purged=self.purger.purged)

    async def record_alerts(self, found: list[tuple[AlertRecord, bool]]) -> list[tuple[AlertRecord, Penalty | None]]:
        """Store every alert version; penalise for the new ones. Returns what to publish."""
        to_publish = []
        penalties = []
        for record, deliver in found:
            if deliver:
                try:
                    penalty = await asyncio.to_thread(self.penalties.apply, record.alert, record.tier, time.time())
                except (redis.RedisError, RedisClusterException) as exc:
                    # the alert still goes out; the penalty is reported missing (a cluster client's own
                    # errors, such as no node reachable, are no RedisErrors)
                    log.warning("penalty_failed", client_id=record.alert.client_id, error=type(exc).__name__)
                    penalty = None
                metrics.ALERTS.labels(record.alert.alert_type).inc()
                if penalty is not None:
                    metrics.PENALTIES.labels(penalty.action).inc()
                    penalties.append(penalty)
                to_publish.append((record, penalty))
        self._unwritten_alerts += [record for record, _ in found]
        self._unwritten_penalties += penalties
        await self.write_alerts()
        return to_publish

    @Service.timer(5.0)
    async def _retry_alert_writes(self) -> None:
        await self.write_alerts()

    async def write_alerts(self) -> None:
        """Write the alert versions and penalties not yet in ClickHouse; kept for the next try if it is away."""
        if not (self._unwritten_alerts or self._unwritten_penalties) or self.clickhouse is None:
            return
        db = self.settings.clickhouse_database
        try:
            if self._unwritten_alerts:
                await asyncio.to_thread(write_alerts, self.clickhouse, self._unwritten_alerts, db)
                self._unwritten_alerts = []
            if self._unwritten_penalties:
                await asyncio.to_thread(write_penalties, self.clickhouse, self._unwritten_penalties, db)
                self._unwritten_penalties = []
        except Exception as exc:  # noqa: BLE001 - ClickHouse away: the timer tries again
            log.warning("alert_write_failed", error=type(exc).__name__, waiting=len(self._unwritten_alerts))


def _current_partition() -> int:
    """The partition of the event the agent is handling (tables change only inside one)."""
    event = faust.current_event()
    if event is None:
        raise RuntimeError("the detectors' state changed outside an agent")
    return event.message.partition


def _broker(bootstrap: str) -> list[str]:
    return [f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip()]


def create_app(settings: StreamSettings | None = None) -> faust.App:
    """The worker app for ``settings`` (default: from the environment)."""
    s = settings or StreamSettings()
    app = faust.App(
        s.consumer_group, broker=_broker(s.kafka_bootstrap), store="memory://",
        topic_partitions=s.topic_partitions, topic_replication_factor=s.topic_replication_factor,
        datadir=s.data_dir,
        web_enabled=bool(s.worker_web_port or s.worker_admin_port), web_port=s.worker_web_port or 6066,
        web_bind="127.0.0.1",
        consumer_auto_offset_reset="earliest", producer_acks=-1, broker_rebalance_timeout=s.rebalance_timeout_s,
        broker_session_timeout=s.rebalance_timeout_s, key_serializer="raw", value_serializer="raw",
    )
    clickhouse = None
    if s.worker_admin_port:
        from .admin_host import host_admin

        clickhouse = host_admin(app, s)
    pipeline = Pipeline(s, clickhouse)

    @app.task
    async def start_pipeline() -> None:
        await app.add_runtime_dependency(pipeline)

    windows = app.topic(s.windows_topic, key_serializer="raw", value_serializer="raw")
    alerts = app.topic(s.alerts_topic, key_serializer="raw", value_serializer="raw")
    undeliverable = app.topic(s.undeliverable_topic, key_serializer="raw", value_serializer="raw")
    dead_letters = app.topic(s.dead_letter_topic, key_serializer="raw", value_serializer="raw")
    json_schema: faust.Schema[str, Any] = faust.Schema(key_serializer="json", value_serializer="json")
    tables: dict[str, Any] = {name: app.Table(name, partitions=s.topic_partitions, schema=json_schema)
                              for name in state_tables(s)}
    detection = Detection(s, tables, partition=_current_partition)

    @app.timer(s.state_sweep_interval_s, on_leader=True)
    async def tick() -> None:
        """A tick to every partition: the detect agent sweeps each one's state when it comes."""
        for partition in range(s.topic_partitions):
            await windows.send(key=TICK_KEY, value=b"", partition=partition)

    @app.agent(windows)
    async def detect(stream: faust.StreamT) -> None:
        await pipeline.ready.wait()
        async for event in stream.events():
            if event.key == TICK_KEY:
                for record in detection.sweep(event.message.partition, time.time()):
                    log.info("alert_closed", alert_type=record.alert.alert_type, client_id=record.alert.client_id,
                             occurrences=record.occurrences)
                for name, size in detection.sizes().items():
                    metrics.STATE_ENTRIES.labels(name).set(size)
                continue
            try:
                summary = decode_summary(event.value)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                await dead_letters.send(key=event.key, value=event.value or b"",
                                        headers={"reason": str(exc)[:500].encode(), "source": s.windows_topic.encode()})
                continue
            found = detection.examine(summary)
            if not found:
                continue
            for record, penalty in await pipeline.record_alerts(found):
                payload = record.payload()
                payload["penalty"] = msgspec.to_builtins(penalty) if penalty else None
                await alerts.send(key=record.alert.client_id.encode(), value=json.dumps(payload).encode())
                log.info("alert", alert_type=record.alert.alert_type, client_id=record.alert.client_id,
                         severity=record.alert.severity, penalty=penalty.action if penalty else None)

    @app.agent(alerts)
    async def deliver(stream: faust.StreamT) -> None:
        """Deliveries run side by side (up to ``delivery_concurrency``), each acknowledged when done:
        a dead sink holds its own alerts up to the deadline, never the next ones, and an alert
        whose delivery a stopped worker cut short is delivered again by the next one."""
        await pipeline.ready.wait()
        manual = cast(faust.Stream, stream).noack()  # StreamT's stubs lack noack
        async for event in manual.events():
            alert = json.loads(event.value)

            async def finish(failures: list[dict[str, str]], event: faust.EventT = event,
                             alert: dict[str, Any] = alert) -> None:
                if failures:
                    await undeliverable.send(key=alert["client_id"].encode(),
                                             value=json.dumps({**alert, "undelivered": failures}).encode())
                await manual.ack(event)

            await pipeline.deliverer.dispatch(alert, finish)

    return app
