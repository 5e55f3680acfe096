"""The running pipeline for fault tests: Valkey, Tansu, a stream worker serving the admin API,
and the demo API behind the enforcer, each a handle a test can kill and restart; plus a
steady load and the reconciliation every fault test ends with."""

from __future__ import annotations

import os
import secrets
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ratewarden.local import KafkaServer, RedisServer, StreamWorker, create_topics, free_port
from ratewarden.stack import TOPICS, ApiServer

from ..helpers import read_topic

PARTITIONS = 4


@dataclass
class Pipeline:
    redis: RedisServer
    kafka: KafkaServer
    worker: StreamWorker
    api: ApiServer
    env: dict[str, str]
    admin_url: str
    workdir: Path

    def new_worker(self) -> StreamWorker:
        self.worker = StreamWorker(workdir=self.workdir / "logs", env=self.env).start()
        return self.worker

    def usage_total(self) -> int:
        response = httpx.get(f"{self.admin_url}/api/v1/usage", params={"start": "2000-01-01T00:00:00"},
                             headers={"authorization": f"Bearer {self.env['RATEWARDEN_ADMIN_TOKEN']}"}, timeout=10)
        response.raise_for_status()
        return sum(row["requests"] for row in response.json())

    def events_in_kafka(self) -> int:
        records = read_topic(self.env["RATEWARDEN_KAFKA_BOOTSTRAP"], "ratewarden.requests", idle_s=2, timeout_s=120)
        return len({r.value for r in records})


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    admin_port = free_port()
    redis = RedisServer().start()
    (tmp_path / "kafka").mkdir()
    kafka = KafkaServer(workdir=tmp_path / "kafka").start()
    create_topics(kafka.url, dict.fromkeys(TOPICS, PARTITIONS))
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "RATEWARDEN_REDIS_URL": redis.url,
        "RATEWARDEN_KAFKA_BOOTSTRAP": kafka.url, "RATEWARDEN_CLICKHOUSE_URL": f"chdb://{tmp_path / 'clickhouse'}",
        "RATEWARDEN_DATA_DIR": str(tmp_path / "faust"),
        "RATEWARDEN_SPILL_DIR": str(tmp_path / "spill"), "RATEWARDEN_TOPIC_PARTITIONS": str(PARTITIONS),
        "RATEWARDEN_API_KEY_SECRET": secrets.token_urlsafe(24), "RATEWARDEN_ADMIN_TOKEN": secrets.token_urlsafe(24),
        "RATEWARDEN_WORKER_ADMIN_PORT": str(admin_port), "RATEWARDEN_CONSUMER_GROUP": f"faults-{uuid.uuid4().hex[:6]}",
        "RATEWARDEN_REDIS_BUDGET_MS": "200",
    }
    env["PATH"] = os.path.dirname(sys.executable) + ":" + env["PATH"]
    (tmp_path / "logs").mkdir()
    worker = StreamWorker(workdir=tmp_path / "logs", env=env).start()
    api = ApiServer(workdir=tmp_path / "logs", env=env).start()
    pipe = Pipeline(redis, kafka, worker, api, env, f"http://127.0.0.1:{admin_port}", tmp_path)
    deadline = time.monotonic() + 60
    while True:
        try:
            pipe.usage_total()
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline, worker.log_tail(40)
            time.sleep(0.5)
    yield pipe
    for process in (pipe.api, pipe.worker, kafka, redis):
        process.stop(timeout_s=20)


def reconcile(pipe: Pipeline, sent: int, timeout_s: float = 120.0) -> dict[str, Any]:
    """Wait until requests sent = events in Kafka = requests counted in ClickHouse."""
    deadline = time.monotonic() + timeout_s
    while True:
        in_kafka, in_clickhouse = pipe.events_in_kafka(), pipe.usage_total()
        totals: dict[str, Any] = {"sent": sent, "kafka": in_kafka, "clickhouse": in_clickhouse}
        if sent == in_kafka == in_clickhouse:
            return totals
        if time.monotonic() > deadline:  # what the worker was doing, for the failure message
            return {**totals, "worker_log": pipe.worker.log_tail(60)}
        time.sleep(2)
