"""The traffic simulator: labelled, reproducible, and every abusive client is caught by the
detectors while no legitimate one is (offline check of the scenario the stream tests use)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ratewarden.stream.detectors import EndpointStuffingDetector, registered
from ratewarden.stream.settings import DetectorSettings
from ratewarden.stream.simulate import EXPECTED_ALERT, events, scenario
from ratewarden.stream.windows import ClientSummary, WindowAccumulator

from .helpers import consume_events

START_US = 1_900_000_020_000_000


def test_scenario_is_reproducible_and_labelled() -> None:
    clients = scenario(legit=200, per_abuse=3)
    assert sum(c.label == "legit" for c in clients) == 200
    assert {c.label for c in clients if c.label != "legit"} == set(EXPECTED_ALERT)
    first = [e.event_id for e in events(clients[:20], 2, START_US, seed=1)]
    assert first == [e.event_id for e in events(clients[:20], 2, START_US, seed=1)]


def test_detectors_separate_abuse_from_legitimate_traffic_in_the_scenario() -> None:
    clients = scenario(legit=200, per_abuse=3)
    accumulator = WindowAccumulator(window_s=60)
    for event in events(clients, 5, START_US):
        accumulator.add(event)
    detectors = [d for d in registered(DetectorSettings()) if d.summary_type is ClientSummary]
    states: dict[str, dict[str, object]] = {d.alert_type: {} for d in detectors}
    found: dict[str, set[str]] = {}
    for window in sorted(accumulator.clients.values(), key=lambda w: w.window_start):
        for detector in detectors:
            alert = detector.check(window.summary(), states[detector.alert_type])
            if alert:
                found.setdefault(alert.client_id, set()).add(alert.alert_type)
    endpoint = EndpointStuffingDetector()
    assert all(endpoint.check(e.summary(), {}) is None for e in accumulator.endpoints.values())  # 3 stuffers: few IPs
    for client in clients:
        if client.label == "legit":
            assert client.client_id not in found, (client, found.get(client.client_id))
        else:
            assert EXPECTED_ALERT[client.label] in found.get(client.client_id, set()), client


def test_simulate_command_writes_labelled_events(tmp_path: Path, kafka_bootstrap_url: str, topic: str) -> None:
    labels = tmp_path / "labels.json"
    result = subprocess.run([sys.executable, "-m", "ratewarden.cli", "simulate", "--bootstrap", kafka_bootstrap_url,
                             "--topic", topic, "--minutes", "1", "--legit", "8", "--per-abuse", "1",
                             "--labels", str(labels)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    sent = int(result.stdout.split()[1])
    assert sent > 100
    received = consume_events(kafka_bootstrap_url, topic, expect=sent)
    assert len(received) == sent
    truth = json.loads(labels.read_text())
    assert sum(v == "legit" for v in truth.values()) == 8 and len(truth) == 13
    assert {e.client_id for e in received} <= set(truth)
