"""A Kafka broker that stops answering while the worker holds read events delays the offset
commit, never the ClickHouse writes: the flush gives up on Kafka after ``kafka_timeout_s``
and a later flush commits."""

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
