"""Stream worker benchmark, in one run on the local broker (Tansu), Valkey and chDB:

1. the floor: a bare aiokafka consumer reading the request topic, no work at all;
2. the worker (``ratewarden worker``, every detector on) draining the same backlog:
   sustained events/s, and its ratio to the floor;
3. the delay from an event's production to its usage row being written in ClickHouse,
   with events produced at a steady rate while the worker keeps up (p50/p99 from the
   worker's ``ratewarden_stream_delay_seconds`` histogram, a 1% sample of all events).

    python bench/stream.py [--quick] [--events N] [--rate R] [--seconds S]

Prints a table; asserts nothing. The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka import AIOKafkaConsumer
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from ratewarden.local import KafkaServer, RedisServer, StreamWorker, create_topics, free_port
from ratewarden.stream.simulate import events, publish, scenario

PARTITIONS = 4
console = Console()


def backlog(bootstrap: str, topic: str, count: int) -> int:
    clients = scenario(legit=1000, per_abuse=3)
    start_us = int(time.time() // 60 * 60 - 60 * 60) * 1_000_000
    looped = itertools.cycle(events(clients, 10, start_us))
    return asyncio.run(publish(bootstrap, topic, itertools.islice(looped, count)))


def floor(bootstrap: str, topic: str, count: int) -> float:
    async def run() -> float:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None,
                                    max_poll_records=20_000, fetch_max_bytes=64 * 2**20,
                                    max_partition_fetch_bytes=16 * 2**20)
        await consumer.start()
        seen, started = 0, None
        try:
            while seen < count:
                batch = await consumer.getmany(timeout_ms=1000)
                started = started or time.perf_counter()
                seen += sum(len(records) for records in batch.values())
            return seen / (time.perf_counter() - started)
        finally:
            await consumer.stop()

    return asyncio.run(run())


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name + (f"{{le={sample.labels['le']}}}" if "le" in sample.labels else "")
            out[key] = sample.value
    return out


def histogram_quantile(before: dict[str, float], after: dict[str, float], q: float) -> float:
    """The upper bound of the bucket holding quantile ``q`` of the observations between two scrapes."""
    name = "ratewarden_stream_delay_seconds_bucket"
    buckets = sorted((float(k.split("le=")[1].rstrip("}")), after[k] - before.get(k, 0.0))
                     for k in after if k.startswith(name))
    total = buckets[-1][1]
    for bound, cumulative in buckets:
        if total and cumulative >= q * total:
            return bound
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, under two minutes")
    parser.add_argument("--events", type=int, help="backlog the worker drains (default 1,000,000; quick 300,000)")
    parser.add_argument("--rate", type=float, default=20_000, help="events/s produced for the delay phase")
    parser.add_argument("--seconds", type=float, help="length of the delay phase (default 30; quick 15)")
    args = parser.parse_args()
    count = args.events or (300_000 if args.quick else 1_000_000)
    seconds = args.seconds or (15 if args.quick else 30)

    work = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    with KafkaServer() as kafka, RedisServer() as redis_server:
        topic = "ratewarden.requests"
        create_topics(kafka.url, {topic: PARTITIONS})
        console.print(f"publishing a backlog of {count:,} events ...")
        backlog(kafka.url, topic, count)
        floor_rate = floor(kafka.url, topic, count)
        console.print(f"floor (bare aiokafka consumer): {floor_rate:,.0f} events/s")

        metrics_port = free_port()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("RATEWARDEN_")},
               "RATEWARDEN_KAFKA_BOOTSTRAP": kafka.url, "RATEWARDEN_REDIS_URL": redis_server.url,
               "RATEWARDEN_TOPIC_PARTITIONS": str(PARTITIONS), "RATEWARDEN_CLICKHOUSE_URL": f"chdb://{work / 'ch'}",
               "RATEWARDEN_DATA_DIR": str(work / "faust"),
               "RATEWARDEN_WORKER_METRICS_ADDRESS": f"127.0.0.1:{metrics_port}"}
        (work / "worker").mkdir()
        with StreamWorker(workdir=work / "worker", env=env) as worker:
            started = None
            while (done := scrape(metrics_port).get("ratewarden_stream_events_total", 0.0)) < count:
                if started is None and done > 0:
                    started, first = time.perf_counter(), done
                time.sleep(0.05)
            worker_rate = (count - first) / (time.perf_counter() - started)
            console.print(f"worker drained the backlog at {worker_rate:,.0f} events/s")

            time.sleep(3)  # let the backlog's last flush land
            before = scrape(metrics_port)
            clients = scenario(legit=1000, per_abuse=3)
            now_us = int(time.time() * 1_000_000)
            steady = int(args.rate * seconds)
            console.print(f"producing {steady:,} events at {args.rate:,.0f}/s for the delay ...")
            asyncio.run(publish(kafka.url, topic, itertools.islice(events(clients, 60, now_us), steady), args.rate))
            deadline = time.monotonic() + 30
            while (scrape(metrics_port)["ratewarden_stream_events_total"] < count + steady
                   and time.monotonic() < deadline):
                time.sleep(0.2)
            time.sleep(2.5)  # the last flushes
            after = scrape(metrics_port)
            p50, p99 = histogram_quantile(before, after, 0.5), histogram_quantile(before, after, 0.99)
            worker_log = worker.log_tail(200)

    table = Table(title=f"stream worker, {PARTITIONS} partitions, one worker process")
    for column in ("figure", "value", "target"):
        table.add_column(column)
    table.add_row("floor: bare aiokafka consume", f"{floor_rate:,.0f} events/s", "")
    table.add_row("worker, every detector on", f"{worker_rate:,.0f} events/s", ">= 50,000 events/s")
    table.add_row("worker / floor", f"{worker_rate / floor_rate:.2f}", "")
    table.add_row("delay to ClickHouse, p50", f"<= {p50:g} s", "")
    table.add_row("delay to ClickHouse, p99", f"<= {p99:g} s", "< 5 s")
    console.print(table)
    if "Traceback" in worker_log:
        console.print("[red]the worker logged an error:[/red]\n" + worker_log)
    print(json.dumps({"events": count, "floor_events_per_s": round(floor_rate),
                      "worker_events_per_s": round(worker_rate), "worker_ratio": round(worker_rate / floor_rate, 3),
                      "p50_delay_s": p50, "p99_delay_s": p99, "delay_rate_per_s": args.rate,
                      "delay_seconds": seconds}))


if __name__ == "__main__":
    main()
