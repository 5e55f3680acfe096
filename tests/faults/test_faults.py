"""Faults on the running pipeline under steady load; each test ends by reconciling requests
sent, events in Kafka and requests counted in ClickHouse. Run alone: ``pytest tests/faults``."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import redis

from ratewarden.enforcer import ApiKeyStore
from ratewarden.enforcer.apikeys import IDS_HASH, KEYS_HASH

from ..helpers import Load
from .conftest import Pipeline, reconcile


def _trusted_load(pipe: Pipeline) -> Load:
    key, _ = ApiKeyStore(redis.Redis.from_url(pipe.env["RATEWARDEN_REDIS_URL"]),
                         pipe.env["RATEWARDEN_API_KEY_SECRET"].encode()).create("load", tier="trusted")
    load = Load(pipe.api.url)
    load.headers = {"authorization": f"Bearer {key}"}
    return load


def test_redis_restart_mid_load(pipeline: Pipeline) -> None:
    load = _trusted_load(pipeline).start()
    time.sleep(3)
    client = redis.Redis.from_url(pipeline.env["RATEWARDEN_REDIS_URL"])
    keys = {name: client.hgetall(name) for name in (KEYS_HASH, IDS_HASH)}  # what persistence would keep
    pipeline.redis.kill()
    time.sleep(4)  # decided without Redis meanwhile: the trusted tier fails open
    pipeline.redis.restart()
    client = redis.Redis.from_url(pipeline.env["RATEWARDEN_REDIS_URL"])
    for name, fields in keys.items():
        client.hset(name, mapping=fields)
    time.sleep(3)
    sent = load.stop()
    assert set(load.statuses) <= {200}, load.statuses  # no 500, no error, and the trusted tier was never refused

    # limits are exact again: the anonymous login rule (20 failures a minute per IP) admits exactly 20 of 30
    # (one username per attempt: the demo app also limits failures per username)
    while time.gmtime().tm_sec > 45:  # stay inside one fixed window
        time.sleep(1)
    with httpx.Client(base_url=pipeline.api.url, timeout=10) as http:
        statuses = [http.post("/v1/login", json={"username": f"u{i}", "password": "b"}).status_code
                    for i in range(30)]
    assert statuses.count(401) == 20 and statuses.count(429) == 10, statuses
    totals = reconcile(pipeline, sent + 30)
    assert totals["sent"] == totals["kafka"] == totals["clickhouse"], totals


def test_kill_9_the_worker_and_start_another(pipeline: Pipeline) -> None:
    load = _trusted_load(pipeline).start()
    time.sleep(5)
    pipeline.worker.kill()
    time.sleep(3)
    pipeline.new_worker()
    time.sleep(3)
    sent = load.stop()
    assert set(load.statuses) <= {200}, load.statuses
    totals = reconcile(pipeline, sent)
    assert totals["sent"] == totals["kafka"] == totals["clickhouse"], totals


def test_kafka_away_for_30_seconds(pipeline: Pipeline) -> None:
    # the broker stops answering (SIGSTOP) and comes back with its data: killing the in-memory
    # Tansu would lose what it had acknowledged, which no client could prevent
    load = _trusted_load(pipeline).start()
    time.sleep(3)
    pipeline.kafka.pause()
    try:
        time.sleep(30)
    finally:
        pipeline.kafka.resume()
    time.sleep(5)
    sent = load.stop()
    assert set(load.statuses) <= {200}, load.statuses  # requests never noticed
    slow = sorted(load.latencies)[int(len(load.latencies) * 0.99)]
    assert slow < 1.0, slow
    totals = reconcile(pipeline, sent, timeout_s=180)
    assert totals["sent"] == totals["kafka"] == totals["clickhouse"], totals


def _immutable(paths: list[Path], on: bool) -> None:
    """chattr +i / -i: not even root may create files there (a full or failed disk, as ClickHouse sees it)."""
    result = subprocess.run(["chattr", "+i" if on else "-i", *map(str, paths)], capture_output=True, text=True)
    if result.returncode:
        message = f"cannot make ClickHouse's data unwritable (chattr needs root on ext4/xfs): {result.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def test_clickhouse_unwritable_for_30_seconds(pipeline: Pipeline) -> None:
    load = _trusted_load(pipeline).start()
    time.sleep(4)
    tables = [p for p in (pipeline.workdir / "clickhouse" / "store").glob("*/*") if p.is_dir()]
    assert tables
    _immutable(tables, True)
    try:
        time.sleep(30)
        behind = pipeline.usage_total()  # reads still work; nothing new lands
    finally:
        _immutable(tables, False)
    time.sleep(5)
    sent = load.stop()
    assert set(load.statuses) <= {200}, load.statuses  # requests never noticed
    totals = reconcile(pipeline, sent)
    assert totals["sent"] == totals["kafka"] == totals["clickhouse"], totals
    assert behind < sent - 1000  # the outage was real: 30 s of traffic waited
    log = (pipeline.workdir / "logs" / "stream-worker.log").read_text(errors="replace")
    assert "clickhouse_unavailable" in log and "clickhouse_recovered" in log
