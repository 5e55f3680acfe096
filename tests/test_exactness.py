"""Exact limits under real concurrency: 4 OS processes x 8 concurrent callers on one key."""

from __future__ import annotations

import datetime as dt
import time

import pytest
import redis

from .helpers import hammer_django, hammer_one_key, one_rule_policy, run_processes

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
    start = dt.datetime.now(dt.UTC).replace(minute=0, second=10, microsecond=0) + dt.timedelta(hours=1)
    offset_s = start.timestamp() - time.time()
    admitted = run_processes(hammer_one_key, (redis_url, policy, offset_s, CALLERS, ATTEMPTS), PROCESSES)
    assert all(isinstance(n, int) for n in admitted), admitted
    assert sum(admitted) == LIMIT, admitted
    assert sum(1 for n in admitted if n) > 1  # the places were really contended across processes


def test_exactly_the_limit_through_the_drf_throttle(redis_sync: redis.Redis, redis_url: str) -> None:
    # the "exact" scope is "100/hour" (sliding window log): 4 processes x 8 threads x 12 tries
    admitted = run_processes(hammer_django, (redis_url, "/exact", CALLERS, ATTEMPTS, None), PROCESSES)
    assert all(isinstance(n, int) for n in admitted), admitted
    assert sum(admitted) == LIMIT, admitted
    assert sum(1 for n in admitted if n) > 1
