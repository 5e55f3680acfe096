"""Exact limits under real concurrency: 4 OS processes x 8 concurrent callers on one key."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import time

import pytest
import redis

from .helpers import hammer_one_key, one_rule_policy

PROCESSES, CALLERS, ATTEMPTS, LIMIT = 4, 8, 12, 100  # 384 attempts for 100 places


@pytest.mark.parametrize(
    ("algorithm", "period", "extra"),
    [
        ("fixed_window", "1h", {}),
        ("sliding_window_counter", "1h", {}),
        ("sliding_window_log", "1h", {}),
        ("token_bucket", "1d", {"burst": LIMIT}),
        ("gcra", "1d", {"burst": LIMIT}),
        ("concurrency", "1h", {}),  # never released: exactly LIMIT in flight
    ],
)
def test_exactly_the_limit_is_admitted(redis_sync: redis.Redis, redis_url: str, algorithm: str, period: str,
                                       extra: dict) -> None:
    policy = one_rule_policy(algorithm, LIMIT, period, **extra)
    # start 10 s into an hour (UTC) so no window boundary falls inside the run
    start = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=10, microsecond=0) + dt.timedelta(hours=1)
    offset_s = start.timestamp() - time.time()
    context = multiprocessing.get_context("spawn")
    go, ready, results = context.Event(), context.Semaphore(0), context.Queue()
    workers = [context.Process(target=hammer_one_key,
                               args=(redis_url, policy, offset_s, CALLERS, ATTEMPTS, go, ready, results))
               for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    try:
        for _ in range(PROCESSES):
            assert ready.acquire(timeout=60), "a worker process did not start"
        go.set()  # all processes start hammering together
        admitted = [results.get(timeout=120) for _ in range(PROCESSES)]
    finally:
        for worker in workers:
            worker.join(10)
            if worker.is_alive():
                worker.kill()
    assert all(isinstance(n, int) for n in admitted), admitted
    assert sum(admitted) == LIMIT, admitted
    assert sum(1 for n in admitted if n) > 1  # the places were really contended across processes
