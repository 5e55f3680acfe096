"""Detectors on synthetic windows: every abuse pattern is flagged with its evidence;
legitimate heavy users are not."""

from __future__ import annotations

import time
from typing import Any

from ratewarden.enforcer.events import RequestEvent
from ratewarden.stream.detection import Detection, state_tables
from ratewarden.stream.detectors import (
    CredentialStuffingDetector,
    EndpointStuffingDetector,
    KeyCyclingDetector,
    KeySharingDetector,
    RetryStormDetector,
    ScrapingDetector,
    SpikeDetector,
    registered,
)
from ratewarden.stream.settings import DetectorSettings, StreamSettings
from ratewarden.stream.windows import WindowAccumulator, network_of

T0_US = 1_900_000_020_000_000  # a minute boundary


def event(n: int, client: str = "k:key_a", at_s: float = 0.0, **fields: Any) -> RequestEvent:
    base = dict(event_id=f"e{n}", decided_at_us=T0_US + int(at_s * 1e6), host_time_us=T0_US, service="api",
                instance="i", client_id=client, ip="198.51.100.1", tier="paid", method="GET",
                route="GET /v1/items", path="/v1/items", cost=1, allowed=True, remaining=10,
                retry_after_s=0.0, degraded=False, local=False, status=200, latency_ms=2.0)
    base.update(fields)
    return RequestEvent(**base)


def windows(events: list[RequestEvent]) -> WindowAccumulator:
    acc = WindowAccumulator(window_s=60)
    for e in events:
        acc.add(e)
    return acc


def alerts_for(events: list[RequestEvent]) -> list[str]:
    acc = windows(events)
    found = []
    for w in acc.clients.values():
        for detector in registered(DetectorSettings()):
            if not isinstance(w.summary(), detector.summary_type):
                continue
            alert = detector.check(w.summary(), {})
            if alert:
                found.append(alert.alert_type)
    return found


def test_legitimate_heavy_client_is_not_flagged() -> None:
    steady = [event(i, at_s=i * 0.03, path=f"/v1/items/{i % 20}", route="GET /v1/items/{item_id}",
                    ip=f"198.51.100.{i % 2}") for i in range(1900)]
    assert alerts_for(steady) == []
    # a batch job at its limit: some denials, but it honours Retry-After
    batch = []
    for i in range(200):
        denied = i % 10 == 9
        batch.append(event(i, client="k:batch", at_s=i * 0.25, allowed=not denied,
                           status=429 if denied else 200, retry_after_s=0.2 if denied else 0.0))
    assert alerts_for(batch) == []


def test_retry_storm() -> None:
    events = [event(i, client="k:storm", at_s=i * 0.1, allowed=i < 5, status=200 if i < 5 else 429,
                    retry_after_s=0.0 if i < 5 else 30.0) for i in range(100)]
    w = next(iter(windows(events).clients.values()))
    alert = RetryStormDetector().check(w.summary(), {})
    assert alert and alert.evidence["denied"] == 95 and alert.evidence["early_retries"] >= 90
    assert alert.dedup_key == "retry_storm:k:storm"


def test_credential_stuffing_from_one_client_and_good_logins() -> None:
    bad = [event(i, client="ip:203.0.113.7", method="POST", route="POST /v1/login", path="/v1/login",
                 status=401, at_s=i * 2) for i in range(25)]
    w = next(iter(windows(bad).clients.values()))
    alert = CredentialStuffingDetector().check(w.summary(), {})
    assert alert and alert.severity == "critical" and alert.evidence["auth_failures"] == 25
    good = [event(i, client="u:alice", method="POST", route="POST /v1/login", path="/v1/login", status=200)
            for i in range(50)]
    assert CredentialStuffingDetector().check(next(iter(windows(good).clients.values())).summary(), {}) is None


def test_distributed_stuffing_is_seen_per_endpoint_not_per_ip() -> None:
    events = [event(i, client=f"ip:203.0.{i // 2}.9", ip=f"203.0.{i // 2}.9", method="POST",
                    route="POST /v1/login", path="/v1/login", status=401, at_s=i) for i in range(60)]
    acc = windows(events)
    assert all(CredentialStuffingDetector().check(w.summary(), {}) is None for w in acc.clients.values())
    alert = EndpointStuffingDetector().check(next(iter(acc.endpoints.values())).summary(), {})
    assert alert and alert.evidence == {"failures": 60, "distinct_ips": 30}


def test_scraping_by_sequential_ids_and_by_misses() -> None:
    sequential = [event(i, client="ip:203.0.113.66", path=f"/v1/items/{900 + i}",
                        route="GET /v1/items/{item_id}", status=200 if 900 + i <= 1000 else 404, at_s=i * 0.5)
                  for i in range(80)]
    alert = ScrapingDetector().check(next(iter(windows(sequential).clients.values())).summary(), {})
    assert alert and alert.evidence["distinct_paths"] == 80 and alert.evidence["sequential_ratio"] > 0.9
    browsing = [event(i, path=f"/v1/items/{(i * 37) % 30}", route="GET /v1/items/{item_id}") for i in range(300)]
    assert ScrapingDetector().check(next(iter(windows(browsing).clients.values())).summary(), {}) is None


def test_key_sharing() -> None:
    shared = [event(i, client="k:leaked", ip=f"198.{i % 12}.{i % 7}.{i}") for i in range(40)]
    alert = KeySharingDetector().check(next(iter(windows(shared).clients.values())).summary(), {})
    assert alert and alert.evidence["distinct_networks"] >= 8
    office = [event(i, client="k:office", ip=f"198.51.100.{i % 3}") for i in range(500)]
    assert KeySharingDetector().check(next(iter(windows(office).clients.values())).summary(), {}) is None
    assert network_of("198.51.100.77") == "198.51.100.0/24"


def test_spike_against_own_baseline_with_an_absolute_floor() -> None:
    detector, baselines = SpikeDetector(), dict[str, Any]()
    acc = WindowAccumulator(window_s=60)
    for minute, count in enumerate([100, 110, 90, 1000]):
        for i in range(count):
            acc.add(event(i, client="k:spiky", at_s=minute * 60 + i * 0.01))
        for i in range(10 if minute < 3 else 250):  # a small client growing 25x stays under the floor
            acc.add(event(i, client="k:small", at_s=minute * 60 + i * 0.01))
    found = []
    for w in sorted(acc.clients.values(), key=lambda w: w.window_start):
        alert = detector.check(w.summary(), baselines)
        if alert:
            found.append((alert.client_id, alert.evidence["requests"]))
    assert found == [("k:spiky", 1000)]


def test_key_cycling_is_seen_per_ip() -> None:
    cycling = [event(i, client=f"k:stolen{i % 15}", key_id=f"stolen{i % 15}", ip="203.0.113.99", at_s=i)
               for i in range(45)]
    acc = windows(cycling)
    assert all(KeySharingDetector().check(w.summary(), {}) is None for w in acc.clients.values())
    (ip_window,) = acc.ips.values()
    alert = KeyCyclingDetector().check(ip_window.summary(), {})
    assert alert and alert.client_id == "ip:203.0.113.99" and alert.evidence == {"distinct_keys": 15, "requests": 45}
    office = [event(i, client=f"k:team{i % 3}", key_id=f"team{i % 3}", ip="198.51.100.7") for i in range(300)]
    assert KeyCyclingDetector().check(next(iter(windows(office).ips.values())).summary(), {}) is None


def test_detection_state_is_swept_once_untouched_for_its_lifetime() -> None:
    """Every table the detection stage keeps shrinks back to nothing once its clients go quiet."""
    settings = StreamSettings(state_ttl_s=600, alert_cooldown_s=300)
    tables: dict[str, dict[str, Any]] = {name: {} for name in state_tables(settings)}
    detection = Detection(settings, tables)
    acc = WindowAccumulator(window_s=60)
    for c in range(500):  # one-off clients, and one scraper that raises an alert
        acc.add(event(c, client=f"ip:198.51.{c // 250}.{c % 250}"))
    for i in range(80):
        acc.add(event(1000 + i, client="ip:203.0.113.66", path=f"/v1/items/{900 + i}", status=404, at_s=i * 0.5))
    found = [f for w in acc.close_all() for f in detection.examine(w.summary())]
    assert [record.alert.alert_type for record, deliver in found if deliver] == ["scraping"]
    assert detection.sizes() == {"examined": 501, "open-alerts": 1, "traffic_spike-state": 501}

    written = time.time()
    assert detection.sweep(partition=0, now=written) == []
    closed = detection.sweep(partition=0, now=written + 300)  # the alert's cooldown: it closes
    assert [record.dedup_key for record in closed] == ["scraping:ip:203.0.113.66"]
    assert detection.sizes() == {"examined": 501, "open-alerts": 0, "traffic_spike-state": 501}
    detection.sweep(partition=0, now=written + 600)
    assert detection.sizes() == {"examined": 0, "open-alerts": 0, "traffic_spike-state": 0}
    assert all(table == {} for table in tables.values())
