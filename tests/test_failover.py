"""Failover under load: the demo API behind the enforcer on a Redis Cluster (then on Sentinel),
20 clients at 10 requests/s each, and the primary holding part of their counters killed with
SIGKILL. Every request is answered (no 500), every event reaches Kafka, decisions come back to
Redis by themselves once a replica is promoted, and over-admission stays within the bound the
README documents for a fail-open tier (see "Operating at scale").

Figures come from the events themselves: each says whether it was decided without Redis
(``degraded``), when, for whom, and whether it was admitted."""

from __future__ import annotations

import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ratewarden.enforcer.events import decode_event
from ratewarden.local import KafkaServer, RedisServer, create_topics
from ratewarden.local_topologies import LocalCluster, LocalSentinels
from ratewarden.stack import ApiServer

from .helpers import Load, read_topic

pytestmark = pytest.mark.slow

TOPIC = "ratewarden.requests"
LIMIT, WINDOW_S = 60, 10  # per client: 60 requests per 10 s fixed window
CLIENTS, RATE_PER_CLIENT = 20, 10.0  # each client asks 100 per window: 40 are refused
SHARE = 1.0  # RATEWARDEN_FALLBACK_SHARE: while its Redis is away, a process admits this share of a limit
POLICY = f"""
anonymous_tier: anonymous
default_tier: anonymous
tiers:
  anonymous:
    fail_mode: open
    rules:
      - {{name: per-ip, algorithm: fixed_window, limit: {LIMIT}, period: {WINDOW_S}s, scope: [ip]}}
      - {{name: per-route, algorithm: fixed_window, limit: 1000000, period: {WINDOW_S}s, scope: [endpoint]}}
endpoints:
  - {{route: GET /healthz, exempt: true}}  # the readiness probe: no event
"""


@pytest.fixture
def kafka() -> Iterator[KafkaServer]:
    with KafkaServer() as server:
        create_topics(server.url, {TOPIC: 4})
        yield server


def _api(tmp_path: Path, redis_url: str, kafka: KafkaServer) -> ApiServer:
    (tmp_path / "policy.yaml").write_text(POLICY)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "RATEWARDEN_REDIS_URL": redis_url,
           "RATEWARDEN_KAFKA_BOOTSTRAP": kafka.url, "RATEWARDEN_POLICY_FILE": str(tmp_path / "policy.yaml"),
           "RATEWARDEN_TRUSTED_PROXIES": "127.0.0.1/32", "RATEWARDEN_SPILL_DIR": str(tmp_path / "spill"),
           "RATEWARDEN_FALLBACK_SHARE": str(SHARE), "RATEWARDEN_API_KEY_SECRET": secrets.token_urlsafe(24)}
    return ApiServer(workdir=tmp_path, env=env).start()


def _failover(api: ApiServer, kafka: KafkaServer, ips: list[str], kill: Callable[[], None], label: str,
              settle_s: float, promoted: Callable[[], bool]) -> dict[str, Any]:
    """Load, kill, load until ``settle_s`` after the kill; the figures, from the events, and when the
    servers themselves had promoted a replica (``promoted()`` polled)."""
    load = Load(api.url, RATE_PER_CLIENT, clients=[{"x-forwarded-for": ip} for ip in ips]).start()
    time.sleep(4)
    killed_at_us = time.time() * 1e6
    kill()
    while not promoted():
        assert time.time() * 1e6 - killed_at_us < settle_s * 1e6, "no replica was promoted"
        time.sleep(0.02)
    promoted_after_s = time.time() - killed_at_us / 1e6
    time.sleep(max(0.0, settle_s - promoted_after_s))
    sent = load.stop()
    events = [decode_event(record.value) for record in read_topic(kafka.url, TOPIC, expect=sent, linger_s=2,
                                                                   timeout_s=60)]
    degraded = [e for e in events if e.degraded]
    admitted: dict[tuple[str, int], int] = defaultdict(int)
    for event in events:
        if event.allowed:
            admitted[(event.ip, int(event.decided_at_us // (WINDOW_S * 1e6)))] += 1
    over = {key: n - LIMIT for key, n in admitted.items() if n > LIMIT}
    back_after_s = max(((e.host_time_us - killed_at_us) / 1e6 for e in degraded), default=0.0)
    degraded_clients = {e.ip for e in degraded}
    gap_s = max(back_after_s, 0.0)
    # the documented bound, per client and failover: what one process's fallback admits during the gap
    # (a full bucket of SHARE x LIMIT, refilling at SHARE x LIMIT per window), plus the last writes
    # replication had not carried (at most this client's requests in the replication lag: one here)
    bound = SHARE * LIMIT * (1 + gap_s / WINDOW_S) + 1
    figures = {"sent": sent, "events": len(events), "distinct_events": len({e.event_id for e in events}),
               "statuses": dict(load.statuses), "degraded_decisions": len(degraded),
               "clients_degraded": len(degraded_clients), "promoted_after_s": round(promoted_after_s, 2),
               "back_on_redis_after_s": round(back_after_s, 2),
               "over_admitted_total": sum(over.values()), "over_admitted_worst_client": max(over.values(), default=0),
               "bound_per_client": round(bound, 1)}
    print(f"{label}: {figures}")
    return figures


def _check(figures: dict[str, Any]) -> None:
    assert set(figures["statuses"]) <= {200, 429}, figures  # no 500, no error, no timeout
    assert figures["events"] == figures["distinct_events"] == figures["sent"], figures  # every event published
    assert figures["degraded_decisions"] > 0, figures  # the kill was felt (or the test proves nothing)
    # back on Redis by itself, within a second of the servers' own promotion of a replica
    assert figures["back_on_redis_after_s"] <= figures["promoted_after_s"] + 1, figures
    assert figures["over_admitted_worst_client"] <= figures["bound_per_client"], figures


def test_a_cluster_primary_killed_under_load(tmp_path: Path, kafka: KafkaServer) -> None:
    node_timeout_s = 2.0
    with LocalCluster(primaries=3, replicas=1, node_timeout_ms=int(node_timeout_s * 1000)) as cluster:
        api = _api(tmp_path, cluster.url, kafka)
        try:
            ips = [f"198.51.100.{n}" for n in range(1, CLIENTS + 1)]
            # a primary holding some clients' counters but not the route's, which every request uses
            route_node = cluster.primary_of("{e:GET /v1/items/{item_id}}")
            victim = next(cluster.primary_of(f"{{ip:{ip}}}") for ip in ips
                          if cluster.primary_of(f"{{ip:{ip}}}") is not route_node)
            on_victim = sum(cluster.primary_of(f"{{ip:{ip}}}") is victim for ip in ips)
            slot_owner = f"{{ip:{next(ip for ip in ips if cluster.primary_of(f'{{ip:{ip}}}') is victim)}}}"
            figures = _failover(api, kafka, ips, victim.kill, f"cluster ({on_victim} of {CLIENTS} clients' "
                                f"counters on the killed primary, node timeout {node_timeout_s:g} s)", settle_s=12,
                                promoted=lambda: cluster.primary_of(slot_owner) is not victim)
        finally:
            api.stop()
    _check(figures)
    assert figures["clients_degraded"] == on_victim, figures  # the other primaries kept deciding


def test_a_sentinel_primary_killed_under_load(tmp_path: Path, kafka: KafkaServer) -> None:
    down_after_s = 1.0
    with LocalSentinels(replicas=1, sentinels=3, down_after_ms=int(down_after_s * 1000)) as setup:
        api = _api(tmp_path, setup.url, kafka)
        try:
            primary: RedisServer = setup.primary
            figures = _failover(api, kafka, [f"198.51.100.{n}" for n in range(1, CLIENTS + 1)], primary.kill,
                                f"sentinel (down-after {down_after_s:g} s)", settle_s=12,
                                promoted=lambda: setup.master_port() != primary.port)
        finally:
            api.stop()
    _check(figures)
