"""A detector is one class plus one settings field: registered through the settings alone, it is
screened, run and alerts end to end in a real worker (Kafka, Redis, ClickHouse)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from ratewarden.enforcer.events import RequestEvent
from ratewarden.local import StreamWorker
from ratewarden.stream.detection import Detection, Screen
from ratewarden.stream.detectors import registered
from ratewarden.stream.simulate import publish
from ratewarden.stream.windows import WindowAccumulator

from .costly_detector import CostlyDetector, Settings
from .stream_support import FAST_WINDOWS, read_topic, worker_env

REPO = Path(__file__).resolve().parent.parent


class CostlyWorker(StreamWorker):
    """A worker process whose settings carry the extra detector."""

    def command(self) -> list[str]:
        return [sys.executable, "-m", "tests.costly_detector"]


def request(n: int, client: str, cost: int, at_us: int) -> RequestEvent:
    return RequestEvent(event_id=f"{client}-{n}", decided_at_us=at_us + n * 100_000, host_time_us=at_us,
                        service="api", instance="i", client_id=client, ip="198.51.100.1", tier="paid", method="POST",
                        route="POST /v1/reports", path="/v1/reports", cost=cost, allowed=True, remaining=10,
                        retry_after_s=0.0, degraded=False, local=False, status=200, latency_ms=2.0)


def test_the_registry_finds_a_new_detector_in_its_settings_field() -> None:
    settings = Settings(detectors={"costly": {"max_cost": 500}})
    found = [d for d in registered(settings.detectors) if isinstance(d, CostlyDetector)]
    assert [d.max_cost for d in found] == [500]
    minute = 1_900_000_020_000_000
    costly = [request(n, "k:big", 10, minute) for n in range(100)]
    acc = WindowAccumulator(window_s=20)  # a short window: screened in because the new detector flags it
    for event in costly:
        acc.add(event)
    (summary,) = [w.summary() for w in acc.close_all()]
    assert Screen(settings).wanted(summary)
    (record, deliver), = Detection(settings).examine(summary)
    assert (record.alert.alert_type, record.alert.evidence, deliver) == ("costly", {"cost": 1000}, True)


def test_a_new_detector_alerts_end_to_end(kafka_bootstrap_url: str, redis_url: str, tmp_path: Path) -> None:
    env = worker_env(kafka_bootstrap_url, redis_url, tmp_path, **FAST_WINDOWS,
                     RATEWARDEN_DETECTORS__COSTLY__MAX_COST="500", PYTHONPATH=str(REPO))
    start_us = int(time.time() // 60 * 60 - 120) * 1_000_000  # a closed minute: its windows close at once
    events = [request(n, "k:big", 10, start_us) for n in range(100)]  # cost 1000 in a minute
    events += [request(n, "k:small", 1, start_us) for n in range(50)]  # cost 50: under every window's threshold
    asyncio.run(publish(kafka_bootstrap_url, env["RATEWARDEN_KAFKA_TOPIC"], iter(events)))
    (tmp_path / "worker").mkdir()
    worker = CostlyWorker(workdir=tmp_path / "worker", env=env).start()
    try:
        alerts = [json.loads(r.value) for r in read_topic(kafka_bootstrap_url, env["RATEWARDEN_ALERTS_TOPIC"],
                                                          expect=1, linger_s=3, timeout_s=90)]
    finally:
        worker.stop(timeout_s=15)
    assert [(a["alert_type"], a["client_id"]) for a in alerts] == [("costly", "k:big")]  # one alert, deduplicated
    # the first window to flag it may be a short one (10 s: its threshold scales to 500 / 6)
    assert alerts[0]["evidence"]["cost"] > 500 / 6 and alerts[0]["suggested_action"] == "talk to the client"
    assert alerts[0]["penalty"] is None  # no penalty configured for the new type: alert only
