"""The worker's edges with Kafka: a broker that stops answering while the worker holds read
events delays the offset commit, never the ClickHouse writes (the flush gives up on Kafka after
``kafka_timeout_s`` and a later flush commits); records fetched while new partitions are being
set up are handled, not skipped."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from aiokafka import AIOKafkaProducer

from ratewarden.analytics.migrations import migrate
from ratewarden.local import KafkaServer, create_topics
from ratewarden.stream.processor import RequestProcessor
from ratewarden.stream.settings import StreamSettings
from ratewarden.stream.simulate import events, publish, scenario

EVENTS = 2_000


@contextlib.contextmanager
def _broker(name: str, clickhouse: Any, partitions: int,
            **settings: Any) -> Iterator[tuple[KafkaServer, StreamSettings]]:
    """A broker of its own (tests here stop it), its topics, and worker settings naming them."""
    migrate(clickhouse, db=f"rw_{name}")
    kafka = KafkaServer().start()
    try:
        s = StreamSettings(kafka_bootstrap=kafka.url, kafka_topic=f"{name}.requests", windows_topic=f"{name}.windows",
                           consumer_group=name, clickhouse_database=f"rw_{name}", rebalance_timeout_s=6.0, **settings)
        create_topics(kafka.url, {s.kafka_topic: partitions, s.windows_topic: 1})
        yield kafka, s
    finally:
        kafka.stop()


@contextlib.asynccontextmanager
async def _running(settings: StreamSettings, clickhouse: Any) -> AsyncIterator[RequestProcessor]:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    processor = RequestProcessor(settings, clickhouse, producer)
    running = asyncio.create_task(processor.run())
    try:
        yield processor
    finally:
        processor.stop()
        await asyncio.wait_for(running, 60)  # after its next flush
        await producer.stop()


async def _publish(settings: StreamSettings) -> None:
    start_us = int(time.time() // 60 * 60 - 120) * 1_000_000
    stream = itertools.islice(events(scenario(legit=20, per_abuse=1), 2, start_us), EVENTS)
    assert await publish(settings.kafka_bootstrap, settings.kafka_topic, stream) == EVENTS


def _written(clickhouse: Any, settings: StreamSettings) -> int:
    return clickhouse.query(f"SELECT sum(requests) FROM {settings.clickhouse_database}.usage_minute").result_rows[0][0]


async def _stalled_flush(kafka: KafkaServer, clickhouse: Any, settings: StreamSettings) -> tuple[float, int]:
    async with _running(settings, clickhouse) as processor:
        await _publish(settings)
        deadline = time.monotonic() + 60
        while processor.stats.events < EVENTS:  # read, folded, not yet written (the first flush is 20 s away)
            assert time.monotonic() < deadline, processor.stats
            await asyncio.sleep(0.1)
        assert processor.stats.rows_written == 0
        assert processor.lag() == {0: 0}
        kafka.pause()
        try:
            started = time.monotonic()
            await asyncio.wait_for(processor.flush(), 30)  # unbounded, the commit would wait for the broker
            return time.monotonic() - started, _written(clickhouse, settings)
        finally:
            kafka.resume()


def test_a_broker_that_stops_answering_delays_the_commit_not_the_clickhouse_writes(clickhouse: Any) -> None:
    with _broker("stall", clickhouse, 1, flush_interval_s=20, kafka_timeout_s=1.0) as (kafka, settings):
        flush_s, written = asyncio.run(_stalled_flush(kafka, clickhouse, settings))
    print(f"\nflush with the broker stopped returned after {flush_s:.1f} s; {written} of {EVENTS} events in ClickHouse")
    assert written == EVENTS
    assert flush_s < 30


class _SlowToAnswerWhatWasWritten:
    """The real ClickHouse client, except that the sink's "what is already written" query takes
    ``delay_s`` (a busy server): the window in which a consumer already fetches the new partitions."""

    def __init__(self, client: Any, delay_s: float) -> None:
        self._client, self.delay_s = client, delay_s

    def query(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        if "max(source_offset)" in sql:
            time.sleep(self.delay_s)
        return self._client.query(sql, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


async def _assigned_slowly(clickhouse: Any, settings: StreamSettings) -> int:
    await _publish(settings)  # waiting before the worker starts
    async with _running(settings, _SlowToAnswerWhatWasWritten(clickhouse, 3.0)):
        deadline = time.monotonic() + 60
        while (written := _written(clickhouse, settings)) < EVENTS and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        return written


def test_records_fetched_while_the_partition_is_being_set_up_are_not_lost(clickhouse: Any) -> None:
    # the worker learns what ClickHouse holds when it is given partitions; the Kafka client meanwhile
    # starts fetching them. Records it returned before that were once skipped, never to come again
    # (a restarted worker stopped writing until the next restart).
    with _broker("assign", clickhouse, 2, flush_interval_s=0.5) as (_, settings):
        written = asyncio.run(_assigned_slowly(clickhouse, settings))
    print(f"\n{written} of {EVENTS} events in ClickHouse after a 3 s partition set-up")
    assert written == EVENTS
