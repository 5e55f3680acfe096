"""``/metrics`` of the API processes: the FastAPI demo (``metrics_app``) and the Django demo
(``metrics_view``) expose the decision counters and the decision-latency histogram, by tier and
outcome; the scrape itself is exempt (not decided, not counted)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from django.test import Client
from fastapi.testclient import TestClient

from ratewarden.enforcer import Enforcer, EnforcerSettings, load_policy
from ratewarden.enforcer.django import reset_enforcer
from ratewarden.enforcer.metrics import MAX_TIER_LABELS, OTHER_TIER, DecisionStats
from ratewarden.examples.demo_fastapi.app import POLICY_FILE, create_app

from .metrics_support import sample

LATENCY = "ratewarden_decision_duration_seconds"


OUTCOMES = ("allowed", "denied", "denied_locally", "degraded")


def _deltas(before: str, after: str, tier: str) -> dict[str, tuple[float, float]]:
    """Per outcome: (decisions counted, latencies observed for ``tier``) between two scrapes."""
    def counts(page: str, outcome: str) -> tuple[float, float]:
        return (sample(page, "ratewarden_decisions_total", outcome=outcome),
                sample(page, f"{LATENCY}_count", tier=tier, outcome=outcome))

    result = {}
    for outcome in OUTCOMES:
        (counted_before, timed_before), (counted, timed) = counts(before, outcome), counts(after, outcome)
        result[outcome] = (counted - counted_before, timed - timed_before)
    return result


def test_the_fastapi_demo_serves_decisions_and_latencies(redis_sync: redis.Redis, redis_url: str) -> None:
    enforcer = Enforcer(load_policy(POLICY_FILE), EnforcerSettings(redis_url=redis_url, redis_budget_ms=2000))
    with TestClient(create_app(enforcer), client=("203.0.113.70", 50000)) as client:
        before = client.get("/metrics")
        statuses = [client.get("/v1/items").status_code for _ in range(62)]  # anonymous: 60 a minute
        after = client.get("/metrics")
    assert before.status_code == after.status_code == 200
    assert after.headers["content-type"].startswith("text/plain")
    assert statuses.count(429) >= 1  # (the sliding window may admit 61 when a minute begins mid-run)
    deltas = _deltas(before.text, after.text, "anonymous")
    print(f"\nFastAPI demo /metrics, per outcome (decisions, latencies observed): {deltas}")
    # every request counted and timed once, as answered; the scrapes are exempt: neither decided nor counted
    assert deltas["allowed"] == (statuses.count(200),) * 2 and deltas["degraded"] == (0, 0)
    assert deltas["denied"][0] + deltas["denied_locally"][0] == statuses.count(429)
    assert all(counted == timed for counted, timed in deltas.values())
    assert sample(after.text, f"{LATENCY}_bucket", tier="anonymous", outcome="allowed", le="0.05") >= 60
    # every tier of the policy has its series from the start
    assert f'{LATENCY}_bucket{{le="0.0001",outcome="allowed",tier="paid"}}' in after.text


@pytest.fixture
def django_settings(settings, redis_sync: redis.Redis, redis_url: str) -> Iterator[None]:
    settings.ROOT_URLCONF = "drfdemo.urls"
    settings.RATEWARDEN = {**settings.RATEWARDEN, "REDIS_URL": redis_url, "REDIS_BUDGET_MS": 2000}
    yield
    reset_enforcer()


def test_the_django_demo_serves_decisions_and_latencies(django_settings: None) -> None:
    client = Client(REMOTE_ADDR="198.51.100.70")
    before = client.get("/metrics")
    statuses = [client.get("/v1/items").status_code for _ in range(61)]
    after = client.get("/metrics")
    assert before.status_code == after.status_code == 200
    assert after["Content-Type"].startswith("text/plain")
    allowed, denied = statuses.count(200), statuses.count(429)
    assert denied >= 1 or allowed == 61  # (the sliding window may admit 61 when a minute begins mid-run)
    deltas = _deltas(before.content.decode(), after.content.decode(), "anonymous")
    print(f"\nDjango demo /metrics, per outcome (decisions, latencies observed): {deltas}")
    # each request counted and timed once, as answered; the scrapes were neither decided nor counted
    assert deltas == {"allowed": (allowed, allowed), "denied": (denied, denied), "denied_locally": (0, 0),
                      "degraded": (0, 0)}


def test_tier_labels_are_bounded() -> None:
    """Tiers added at run time get labels of their own up to a bound; the rest share "other"."""
    stats = DecisionStats(f"bounded-{i}" for i in range(MAX_TIER_LABELS + 5))
    tiers = {tier for tier, _ in stats.totals()[0]}
    assert len(tiers) == MAX_TIER_LABELS + 1 and OTHER_TIER in tiers
    assert f"bounded-{MAX_TIER_LABELS - 1}" in tiers and f"bounded-{MAX_TIER_LABELS}" not in tiers


def test_counts_from_many_threads_are_all_kept() -> None:
    """Each thread counts apart (no lock on the request path), and a scrape sums every thread's counts."""
    from concurrent.futures import ThreadPoolExecutor

    from ratewarden.enforcer.decision import Decision

    stats = DecisionStats(["free"])
    allowed = Decision(True, "free", "GET /x", "ip:192.0.2.1")
    denied = Decision(False, "free", "GET /x", "ip:192.0.2.1")

    def decide(_: int) -> None:
        for i in range(10_000):
            stats.observe(allowed if i % 4 else denied, 0.0003)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(decide, range(8)))
    totals, _ = stats.totals()
    buckets, seconds = totals["free", "allowed"]
    assert sum(buckets) == 60_000 and sum(totals["free", "denied"][0]) == 20_000
    assert buckets[2] == 60_000  # 0.3 ms: in the bucket le=0.0005, the third
    assert abs(seconds - 60_000 * 0.0003) < 1e-6
