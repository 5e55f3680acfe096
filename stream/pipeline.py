"""The worker's shared resources and its first stage, as one service of the Faust app.

:class:`Pipeline` creates the topics, migrates ClickHouse, runs the request processor (stage
one) and the override purger, and records alerts and penalties and delivers alerts for the
agents (stage two, in :mod:`ratewarden.stream.app`), which wait for :attr:`Pipeline.ready`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

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
from .penalties import Penalty, PenaltyBox, write_penalties
from .processor import RequestProcessor
from .settings import StreamSettings
from .topics import ensure_topics, worker_topics
from .upkeep import OverridePurger

__all__ = ["Pipeline"]

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
        self._processing: asyncio.Future[None] | None = None
        self.penalties = PenaltyBox(settings)
        self.deliverer = AlertDeliverer(settings)
        self.purger = OverridePurger(lambda: self.penalties.store, settings.override_purge_interval_s)
        # rows ClickHouse has not taken yet, the latest copy of each: an alert by dedup key and life (its
        # table keeps the highest version), a penalty by id; so an outage holds one row per alert, not per version
        self._unwritten_alerts: dict[tuple[str, float], AlertRecord] = {}
        self._unwritten_penalties: dict[str, Penalty] = {}
        self._writing = asyncio.Lock()  # the detect agent and the retry timer both write

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
        self._processing = self.add_future(self.processor.run())
        await self.add_runtime_dependency(self.purger)
        self.ready.set()

    async def on_stop(self) -> None:
        """Let stage one end with its last flush (usage written, offsets committed) before the
        service cancels its futures, then stop deliveries in flight."""
        if self.processor is not None and self._processing is not None:
            self.processor.stop()
            s = self.settings
            # the loop notices within one fetch (flush_interval_s); the flush's Kafka steps are bounded
            await asyncio.wait([self._processing], timeout=s.flush_interval_s + 2 * s.kafka_timeout_s)
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
        """Store the alerts' new versions in ClickHouse; penalise for the new ones. Returns what to publish."""
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
        for record, _ in found:
            self._unwritten_alerts[record.dedup_key, record.first_seen] = record
        for penalty in penalties:
            self._unwritten_penalties[penalty.penalty_id] = penalty
        await self.write_alerts()
        return to_publish

    @Service.timer(5.0)
    async def _retry_alert_writes(self) -> None:
        await self.write_alerts()

    async def write_alerts(self) -> None:
        """Write the alerts (the latest version of each) and penalties not yet in ClickHouse; what it
        cannot write waits for the next try."""
        async with self._writing:
            if self.clickhouse is None:
                return
            db = self.settings.clickhouse_database
            alerts, self._unwritten_alerts = self._unwritten_alerts, {}
            penalties, self._unwritten_penalties = self._unwritten_penalties, {}
            try:
                if alerts:
                    await asyncio.to_thread(write_alerts, self.clickhouse, list(alerts.values()), db)
                    alerts = {}
                if penalties:
                    await asyncio.to_thread(write_penalties, self.clickhouse, list(penalties.values()), db)
                    penalties = {}
            except Exception as exc:  # noqa: BLE001 - ClickHouse away: the timer tries again
                log.warning("alert_write_failed", error=type(exc).__name__, waiting=len(alerts))
            finally:  # what was not written goes back, under what came meanwhile (newer copies win)
                self._unwritten_alerts = {**alerts, **self._unwritten_alerts}
                self._unwritten_penalties = {**penalties, **self._unwritten_penalties}
