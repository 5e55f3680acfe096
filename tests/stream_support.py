"""Helpers for tests that run a real stream worker (a ``ratewarden worker`` child process)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from ratewarden.local import StreamWorker, create_topics

from .helpers import read_topic

__all__ = ["FAST_WINDOWS", "worker_env", "start_worker", "committed_and_ends", "processed_share", "wait_processed",
           "read_topic",
           "query_clickhouse"]

FAST_WINDOWS = {  # real-time tests: short windows that close soon after traffic stops
    "RATEWARDEN_SHORT_WINDOW_S": "10", "RATEWARDEN_SHORT_HOP_S": "5", "RATEWARDEN_ALLOWED_LATENESS_S": "1",
    "RATEWARDEN_IDLE_CLOSE_S": "2",
}


def worker_env(kafka: str, redis_url: str, workdir: Path, **extra: str) -> dict[str, str]:
    """Settings for a worker with topics, consumer group and ClickHouse of its own."""
    run = uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATEWARDEN_")}
    env.update({
        "RATEWARDEN_KAFKA_BOOTSTRAP": kafka, "RATEWARDEN_REDIS_URL": redis_url,
        "RATEWARDEN_KAFKA_TOPIC": f"req-{run}", "RATEWARDEN_WINDOWS_TOPIC": f"win-{run}",
        "RATEWARDEN_ALERTS_TOPIC": f"alerts-{run}", "RATEWARDEN_DEAD_LETTER_TOPIC": f"dlq-{run}",
        "RATEWARDEN_UNDELIVERABLE_TOPIC": f"undeliverable-{run}", "RATEWARDEN_CONSUMER_GROUP": f"rw-{run}",
        "RATEWARDEN_TOPIC_PARTITIONS": "4", "RATEWARDEN_CLICKHOUSE_URL": f"chdb://{workdir / 'clickhouse'}",
        "RATEWARDEN_DATA_DIR": str(workdir / "faust"),
    })
    env.update(extra)
    create_topics(kafka, {env[k]: 4 for k in ("RATEWARDEN_KAFKA_TOPIC", "RATEWARDEN_WINDOWS_TOPIC",
                                              "RATEWARDEN_ALERTS_TOPIC", "RATEWARDEN_DEAD_LETTER_TOPIC")})
    return env


def start_worker(env: dict[str, str], workdir: Path) -> StreamWorker:
    (workdir / "worker").mkdir(parents=True, exist_ok=True)
    return StreamWorker(workdir=workdir / "worker", env=env).start()


async def _positions(bootstrap: str, topic: str, group: str, count: int) -> tuple[dict[int, int], dict[int, int]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(count)]
        ends = await consumer.end_offsets(partitions)
        committed = {tp.partition: (await consumer.committed(tp)) or 0 for tp in partitions}
        return committed, {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


def committed_and_ends(env: dict[str, str], topic: str, group: str) -> tuple[dict[int, int], dict[int, int]]:
    """Per partition of ``topic``: the offset ``group`` committed, and the end offset."""
    return asyncio.run(_positions(env["RATEWARDEN_KAFKA_BOOTSTRAP"], topic, group,
                                  int(env["RATEWARDEN_TOPIC_PARTITIONS"])))


def processed_share(env: dict[str, str]) -> float:
    """Share of the request topic the worker has committed (1.0: everything handled)."""
    committed, ends = asyncio.run(_positions(env["RATEWARDEN_KAFKA_BOOTSTRAP"], env["RATEWARDEN_KAFKA_TOPIC"],
                                             f"{env['RATEWARDEN_CONSUMER_GROUP']}-requests",
                                             int(env["RATEWARDEN_TOPIC_PARTITIONS"])))
    total = sum(ends.values())
    return sum(min(committed[p], ends[p]) for p in ends) / total if total else 1.0


def wait_processed(env: dict[str, str], share: float = 1.0, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (done := processed_share(env)) < share:
        assert time.monotonic() < deadline, f"worker handled {done:.1%} of the events in {timeout_s}s"
        time.sleep(0.5)


def query_clickhouse(url: str, sql: str) -> list[list[Any]]:
    """Rows of ``sql`` on ``url``, from a child process (chDB allows one data directory per process)."""
    code = ("import json, sys; from ratewarden.analytics.client import connect; "
            "print(json.dumps(connect(sys.argv[1]).query(sys.argv[2]).result_rows, default=str))")
    result = subprocess.run([sys.executable, "-c", code, url, sql], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])
