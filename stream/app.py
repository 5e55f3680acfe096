"""The Faust app behind ``ratewarden worker``.

Two stages, scaled together by running more workers (partitions decide parallelism):

1. :class:`~ratewarden.stream.processor.RequestProcessor` (run by
   :class:`~ratewarden.stream.pipeline.Pipeline`, a service of the app) reads
   ``ratewarden.requests`` in large batches: usage to ClickHouse exactly once, closed window
   summaries to ``ratewarden.windows``, undecodable records to the dead letters.
2. Faust agents: ``detect`` runs the registered detectors over each summary with their state in
   Faust tables (recovered from their changelogs on restart, swept of stale entries on each
   tick), records alerts in ClickHouse, penalises as configured, and publishes new alerts to
   ``ratewarden.alerts``; ``deliver`` sends those to Slack and webhooks, each within the
   delivery deadline, and puts what a sink did not take on the undeliverable topic.

:class:`~ratewarden.stream.pipeline.Pipeline` also removes lapsed overrides from the enforcers'
Redis on a timer.

The split is deliberate: a Faust stream costs ~80 microseconds per record on these
machines (about 12,000 records/s per process), too slow for raw request events but ample
for window summaries, of which there are a few per client per minute.
"""

from __future__ import annotations

import json
import time
from typing import Any, cast

import faust
import msgspec

from ratewarden.enforcer.logs import get_logger

from . import metrics
from .detection import Detection, state_tables
from .pipeline import Pipeline
from .settings import StreamSettings
from .state import TICK_KEY
from .windows import decode_summary

__all__ = ["create_app"]

log = get_logger("ratewarden.stream")


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
