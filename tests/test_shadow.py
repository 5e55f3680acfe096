"""Shadow mode end to end: a shadow rule on the demo app denies nothing; the requests it would
have denied reach ClickHouse through Kafka and the stream worker; replayed against a fresh
server with the rule enforcing, the same traffic is denied exactly as often."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from ratewarden.examples.demo_fastapi.app import create_app
from ratewarden.local import RedisServer

from .helpers import make_enforcer
from .stream_support import FAST_WINDOWS, query_clickhouse, start_worker, wait_processed, worker_env

RULE = "strict-per-ip"
PROXY = ["127.0.0.0/8"]


def policy(shadow: bool) -> dict[str, Any]:
    return {"anonymous_tier": "anonymous", "tiers": {"free": {}, "anonymous": {"rules": [
        {"name": "per-ip", "algorithm": "sliding_window_counter", "limit": 10_000, "period": "1m", "scope": ["ip"]},
        {"name": RULE, "algorithm": "sliding_window_counter", "limit": 20, "period": "10s", "scope": ["ip"],
         "shadow": shadow},
    ]}}}


def traffic() -> list[tuple[float, str, str]]:
    """60 s of six clients at 0.5 to 6 requests/s (the rule allows 2/s): (second, client IP, path)."""
    requests = []
    for i, rate in enumerate((0.5, 1, 2, 3, 4, 6)):
        for k in range(int(60 * rate)):
            requests.append((k / rate + i * 0.013, f"100.64.9.{i + 1}", f"/v1/items/{k % 5 + 1}"))
    return sorted(requests)


def enforcer(redis_url: str, shadow: bool, **settings: Any) -> Any:
    # the replay runs a virtual clock; the cache of denials would hold them on the real one
    return make_enforcer(redis_url, policy(shadow), time_source="app", trusted_proxies=PROXY,
                         local_deny_cache=False, **settings)


def replay(enforcer: Any, requests: list[tuple[float, str, str]], start: float) -> list[httpx.Response]:
    """Send ``requests`` in order, the enforcer's clock reading each one's time (deterministic)."""
    clock = [start]
    enforcer.clock = lambda: clock[0]
    responses = []
    with TestClient(create_app(enforcer), client=("127.0.0.1", 1)) as client:
        for second, ip, path in requests:
            clock[0] = start + second
            responses.append(client.get(path, headers={"x-forwarded-for": ip}))
    return responses


def test_shadow_rule_denies_nothing_and_counts_what_enforcing_would_deny(
        kafka_bootstrap_url: str, redis_url: str, tmp_path: Path) -> None:
    requests = traffic()
    start = time.time() - 65  # just past, so the worker's windows close as soon as the traffic ends
    env = worker_env(kafka_bootstrap_url, redis_url, tmp_path, **FAST_WINDOWS)
    worker = start_worker(env, tmp_path)
    try:
        shadowed = replay(enforcer(redis_url, shadow=True, shadow_headers=True, kafka_bootstrap=kafka_bootstrap_url,
                                   kafka_topic=env["RATEWARDEN_KAFKA_TOPIC"], spill_dir=tmp_path / "spill",
                                   publish_linger_ms=5), requests, start)
        wait_processed(env)
    finally:
        worker.stop(timeout_s=15)
    assert {r.status_code for r in shadowed} == {200}, {r.text for r in shadowed if r.status_code != 200}
    flagged = sum(r.headers.get("x-ratewarden-shadow", "").startswith(f'"{RULE}";') for r in shadowed)
    url = env["RATEWARDEN_CLICKHOUSE_URL"]
    [[total, would_deny]] = query_clickhouse(
        url, f"SELECT sum(requests), sumIf(requests, shadow_rule = '{RULE}') FROM ratewarden.usage_minute")

    with RedisServer() as fresh:
        enforced = replay(enforcer(fresh.url, shadow=False), requests, start)
    denied = sum(r.status_code == 429 and r.json()["policy"] == RULE for r in enforced)
    print(f"\n{len(requests)} requests: the shadow rule would have denied {would_deny} (ClickHouse), "
          f"{flagged} (response headers); enforcing on a fresh server it denied {denied}")
    assert int(total) == len(requests)  # every event reached ClickHouse
    assert 0 < denied < len(requests)
    assert int(would_deny) == flagged == denied
