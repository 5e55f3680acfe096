"""The penalty loop, end to end: the demo app behind a real enforcer publishes to Kafka, a real
worker detects credential stuffing, writes a block override to Redis, and the enforcer
answers 429 to the attacker within 5 s of the alert. The trusted tier, doing the same,
is alerted on but never penalised."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import redis
from fastapi.testclient import TestClient

from ratewarden.enforcer import ApiKeyStore
from ratewarden.examples.demo_fastapi.app import create_app

from .helpers import make_enforcer
from .stream_support import FAST_WINDOWS, read_topic, start_worker, worker_env

SECRET = "test-secret-0123456789abcdef"
ATTACKER_IP = "203.0.113.50"
POLICY = {
    "anonymous_tier": "anonymous",
    "tiers": {
        "anonymous": {"rules": [{"name": "per-ip", "algorithm": "sliding_window_counter", "limit": 10_000,
                                 "period": "1m", "scope": ["ip"]}]},
        "free": {},
        "trusted": {"rules": [{"name": "burst", "algorithm": "gcra", "limit": 500, "period": "1s", "scope": ["key"]}]},
    },
}
ATTEMPTS = itertools.count()


def bad_login() -> dict[str, str]:
    """A failed login for a new username each time (the demo app also limits failures per username)."""
    return {"username": f"user{next(ATTEMPTS)}", "password": "guess"}


def test_a_stuffing_client_is_blocked_within_5s_of_its_alert_and_trusted_is_never(
        kafka_bootstrap_url: str, redis_url: str, redis_sync: redis.Redis, tmp_path: Path) -> None:
    env = worker_env(kafka_bootstrap_url, redis_url, tmp_path, **FAST_WINDOWS)
    worker = start_worker(env, tmp_path)
    trusted_key, record = ApiKeyStore(redis_sync, SECRET.encode()).create("partner", tier="trusted")
    enforcer = make_enforcer(redis_url, POLICY, api_key_secret=SECRET, kafka_bootstrap=kafka_bootstrap_url,
                             kafka_topic=env["RATEWARDEN_KAFKA_TOPIC"], spill_dir=tmp_path / "spill",
                             publish_linger_ms=5)
    attacker: list[tuple[float, int, str]] = []
    trusted: list[int] = []
    try:
        with TestClient(create_app(enforcer), client=(ATTACKER_IP, 40000)) as client:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                response = client.post("/v1/login", json=bad_login())
                attacker.append((time.time(), response.status_code,
                                 response.json().get("type", "") if response.status_code == 429 else ""))
                trusted.append(client.post("/v1/login", json=bad_login(),
                                           headers={"authorization": f"Bearer {trusted_key}"}).status_code)
                blocked = [t for t, _, kind in attacker if kind.endswith(":blocked")]
                if blocked and time.time() - blocked[0] > 3:
                    break
                time.sleep(0.1)
        alerts = read_topic(kafka_bootstrap_url, env["RATEWARDEN_ALERTS_TOPIC"], idle_s=2)
    finally:
        worker.stop(timeout_s=15)

    by_client = {json.loads(r.value)["client_id"]: (r.timestamp / 1000, json.loads(r.value)) for r in alerts}
    alerted_at, alert = by_client[f"ip:{ATTACKER_IP}"]
    assert alert["alert_type"] == "credential_stuffing" and alert["penalty"]["action"] == "block"
    first_blocked = min(t for t, _, kind in attacker if kind.endswith(":blocked"))
    print(f"\nblocked {first_blocked - alerted_at:.2f} s after the alert "
          f"({len(attacker)} attempts, the first at {attacker[0][0] - alerted_at:.1f} s)")
    assert first_blocked - alerted_at <= 5.0
    # Nothing but 401 until the penalty: the worker writes the block to Redis before it publishes
    # the alert, so the first block may come a moment before the alert's Kafka timestamp.
    assert all(status == 401 for t, status, _ in attacker if t < first_blocked)

    trusted_alert = by_client[f"k:{record.id}"][1]
    assert trusted_alert["alert_type"] == "credential_stuffing" and trusted_alert["tier"] == "trusted"
    assert trusted_alert["penalty"] is None
    assert set(trusted) == {401}  # never limited
