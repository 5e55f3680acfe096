"""The worker's edges with Kafka: a broker that stops answering while the worker holds read
events delays the offset commit, never the ClickHouse writes (the flush gives up on Kafka after
``kafka_timeout_s`` and a later flush commits); records fetched while new partitions are being
set up are handled, not skipped."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from aiokafka import AIOKafkaProducer

from analytics.migrations import migrate
from ratewarden.local import KafkaServer, create_topics
from stream.processor import RequestProcessor
from stream.settings import StreamSettings
from stream.simulate import events, publish, scenario

EVENTS = 2_000


async def _stalled_flush(kafka: KafkaServer, clickhouse: Any, settings: StreamSettings) -> dict[str, Any]:
    producer = AIOKafkaProducer(bootstrap_servers=kafka.url)
    await producer.start()
    processor = RequestProcessor(settings, clickhouse, producer)
    running = asyncio.create_task(processor.run())
    try:
        start_us = int(time.time() // 60 * 60 - 120) * 1_000_000
        stream = itertools.islice(events(scenario(legit=20, per_abuse=1), 2, start_us), EVENTS)
        assert await publish(kafka.url, settings.kafka_topic, stream) == EVENTS
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
            flush_s = time.monotonic() - started
            written = clickhouse.query(f"SELECT sum(requests) FROM {settings.clickhouse_database}.usage_minute"
                                       ).result_rows[0][0]
        finally:
            kafka.resume()
        return {"flush_s": flush_s, "written": written}
    finally:
        processor.stop()
        await asyncio.wait_for(running, 60)  # after its next flush
        await producer.stop()


def test_a_broker_that_stops_answering_delays_the_commit_not_the_clickhouse_writes(clickhouse: Any) -> None:
    migrate(clickhouse, db="rw_stall")
    kafka = KafkaServer().start()
    settings = StreamSettings(kafka_bootstrap=kafka.url, kafka_topic="stall.requests", windows_topic="stall.windows",
                              consumer_group="stall", clickhouse_database="rw_stall", flush_interval_s=20,
                              kafka_timeout_s=1.0, rebalance_timeout_s=6.0)
    try:
        create_topics(kafka.url, {settings.kafka_topic: 1, settings.windows_topic: 1})
        result = asyncio.run(_stalled_flush(kafka, clickhouse, settings))
    finally:
        kafka.stop()
    print(f"\nflush with the broker stopped returned after {result['flush_s']:.1f} s; "
          f"{result['written']} of {EVENTS} events in ClickHouse")
    assert result["written"] == EVENTS
    assert result["flush_s"] < 30



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


async def _assigned_slowly(kafka: KafkaServer, clickhouse: Any, settings: StreamSettings) -> int:
    start_us = int(time.time() // 60 * 60 - 120) * 1_000_000
    stream = itertools.islice(events(scenario(legit=20, per_abuse=1), 2, start_us), EVENTS)
    assert await publish(kafka.url, settings.kafka_topic, stream) == EVENTS  # waiting before the worker starts
    producer = AIOKafkaProducer(bootstrap_servers=kafka.url)
    await producer.start()
    processor = RequestProcessor(settings, _SlowToAnswerWhatWasWritten(clickhouse, 3.0), producer)
    running = asyncio.create_task(processor.run())
    table = f"{settings.clickhouse_database}.usage_minute"
    try:
        deadline = time.monotonic() + 60
        while (written := clickhouse.query(f"SELECT sum(requests) FROM {table}").result_rows[0][0]) < EVENTS:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        return written
    finally:
        processor.stop()
        await asyncio.wait_for(running, 30)
        await producer.stop()


def test_records_fetched_while_the_partition_is_being_set_up_are_not_lost(clickhouse: Any) -> None:
    # the worker learns what ClickHouse holds when it is given partitions; the Kafka client meanwhile
    # starts fetching them. Records it returned before that were once skipped, never to come again
    # (a restarted worker stopped writing until the next restart).
    migrate(clickhouse, db="rw_assign")
    kafka = KafkaServer().start()
    settings = StreamSettings(kafka_bootstrap=kafka.url, kafka_topic="assign.requests", windows_topic="assign.windows",
                              consumer_group="assign", clickhouse_database="rw_assign", flush_interval_s=0.5,
                              rebalance_timeout_s=6.0)
    try:
        create_topics(kafka.url, {settings.kafka_topic: 2, settings.windows_topic: 1})
        written = asyncio.run(_assigned_slowly(kafka, clickhouse, settings))
    finally:
        kafka.stop()
    print(f"\n{written} of {EVENTS} events in ClickHouse after a 3 s partition set-up")
    assert written == EVENTS
