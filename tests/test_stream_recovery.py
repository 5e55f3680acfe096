"""Exactly-once usage totals: a worker killed with SIGKILL mid-stream and started again
neither loses nor double-counts an event in ClickHouse."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import urllib.request
from pathlib import Path

from ratewarden.stream.simulate import events, publish, scenario

from .metrics_support import sample
from .stream_support import query_clickhouse, start_worker, wait_processed, worker_env

TOTAL = 200_000


def test_kill_9_mid_stream_then_restart_counts_every_event_once(
        kafka_bootstrap_url: str, redis_url: str, tmp_path: Path) -> None:
    env = worker_env(kafka_bootstrap_url, redis_url, tmp_path)
    url = env["RATEWARDEN_CLICKHOUSE_URL"]
    clients = scenario(legit=400, per_abuse=3)
    start_us = int(time.time() // 60 * 60 - 20 * 60) * 1_000_000
    simulated = list(itertools.islice(events(clients, 20, start_us), TOTAL))
    assert len(simulated) == TOTAL

    worker = start_worker(env, tmp_path)
    sent: list[int] = []
    producer = threading.Thread(target=lambda: sent.append(asyncio.run(
        publish(kafka_bootstrap_url, env["RATEWARDEN_KAFKA_TOPIC"], iter(simulated), rate_per_s=25_000))))
    producer.start()
    deadline = time.monotonic() + 60  # ready means its metrics answer; it writes once its partitions are its own
    while sample(urllib.request.urlopen(worker.url, timeout=5).read().decode(),
                 "ratewarden_stream_usage_rows_total") == 0:
        assert time.monotonic() < deadline and producer.is_alive(), "the worker wrote nothing while events came"
        time.sleep(0.1)
    worker.kill()
    written_before = query_clickhouse(url, "SELECT sum(requests) FROM ratewarden.usage_minute")[0][0]
    print(f"\nkilled with {written_before} of {TOTAL} events written")
    assert 0 < written_before < TOTAL  # killed mid-way

    worker.restart()
    producer.join()
    assert sent == [TOTAL]
    wait_processed(env, timeout_s=180)
    worker.stop(timeout_s=15)
    totals = query_clickhouse(url, "SELECT sum(requests), sum(cost) FROM ratewarden.usage_minute")
    assert totals == [[TOTAL, TOTAL]]
    per_client = dict(map(tuple, query_clickhouse(
        url, "SELECT client_id, sum(requests) FROM ratewarden.usage_day GROUP BY client_id")))
    expected: dict[str, int] = {}
    for event in simulated:
        expected[event.client_id] = expected.get(event.client_id, 0) + 1
    assert per_client == expected
