"""Publisher benchmark: the demo app's requests/s with event publishing off and on (interleaved,
same settings), the cost of enqueueing one event on the request path, and the producer's
sustained events/s to the local broker. Prints figures; asserts nothing.

    python bench/publisher.py [--quick]

The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
from rich.console import Console
from rich.table import Table

from bench.support.common import ROOT, load, load_generator, median, uvicorn_server
from ratewarden.enforcer import ApiKeyStore, EnforcerSettings
from ratewarden.enforcer.decision import Decision
from ratewarden.enforcer.events import make_event
from ratewarden.enforcer.identity import Identity
from ratewarden.enforcer.publisher import EventPublisher
from ratewarden.local import kafka_bootstrap
from ratewarden.local import redis_url as local_redis

SECRET = "bench-secret-0123456789abcdef"
TOPIC = "ratewarden.requests"
console = Console()


def http(redis_url: str, bootstrap: str, seconds: float, rounds: int) -> dict[str, float]:
    store = ApiKeyStore(redis.Redis.from_url(redis_url), SECRET.encode())
    header_file = Path(tempfile.mkstemp(suffix=".txt")[1])
    header_file.write_text("".join(f"Authorization: Bearer {store.create(owner=f'p-{i}', tier='bench')[0]}\n"
                                   for i in range(64)))
    spill = tempfile.mkdtemp(prefix="bench-spill-")
    env = {"RATEWARDEN_REDIS_URL": redis_url, "RATEWARDEN_API_KEY_SECRET": SECRET,
           "RATEWARDEN_POLICY_FILE": str(ROOT / "bench" / "policy_single.yaml"), "RATEWARDEN_SPILL_DIR": spill}
    app = "ratewarden.examples.demo_fastapi.app:app"
    servers = {"off": uvicorn_server(app, env),
               "on": uvicorn_server(app, {**env, "RATEWARDEN_KAFKA_BOOTSTRAP": bootstrap})}
    rates: dict[str, list[float]] = {name: [] for name in servers}
    try:
        for server in servers.values():
            load(server.port, 1.0, 64, "/v1/items/7", header_file)
        for _ in range(rounds):
            for name, server in servers.items():
                rates[name].append(load(server.port, seconds, 64, "/v1/items/7", header_file)["rps"])
    finally:
        for server in servers.values():
            server.stop()
        header_file.unlink()
    return {name: median(values) for name, values in rates.items()}


def _event() -> object:
    identity = Identity("k:key_0123abcd", "paid", "203.0.113.9", key_id="key_0123abcd")
    decision = Decision(True, "paid", "GET /v1/items/{item_id}", identity.client_id, 1, "per-minute", None,
                        3000, 2999, 12.0, 0.0, '"per-minute";q=3000;w=60', int(time.time() * 1e6))
    return make_event(decision, identity, method="GET", path="/v1/items/7", user_agent="bench/1.0",
                      status=200, latency_ms=1.2, service="api", instance="bench")


def enqueue_cost_us(bootstrap: str) -> float:
    """Microseconds the request path spends handing one event to the publisher (queue never full)."""
    settings = EnforcerSettings(kafka_bootstrap=bootstrap, kafka_topic=TOPIC, publish_queue_size=10_000_000,
                                spill_dir=Path(tempfile.mkdtemp(prefix="bench-spill-")))
    publisher = EventPublisher(settings)
    event = _event()
    n = 1_000_000
    started = time.perf_counter()
    for _ in range(n):
        publisher.publish(event)  # type: ignore[arg-type]
    return (time.perf_counter() - started) / n * 1e6


def producer_rate(bootstrap: str, events: int) -> float:
    """Sustained events/s from the queue to the broker."""
    async def run() -> float:
        settings = EnforcerSettings(kafka_bootstrap=bootstrap, kafka_topic=TOPIC, publish_queue_size=events,
                                    spill_dir=Path(tempfile.mkdtemp(prefix="bench-spill-")), publish_linger_ms=5)
        publisher = EventPublisher(settings)
        await publisher.start()
        while not publisher.connected:
            await asyncio.sleep(0.01)
        template = _event()
        batch = [make_event(Decision(True, "paid", template.route, f"k:key_{i % 500}", now_us=1),  # type: ignore[attr-defined]
                            Identity(f"k:key_{i % 500}", "paid", "203.0.113.9"), method="GET", path="/v1/items/7",
                            user_agent="bench/1.0", status=200, latency_ms=1.0, service="api", instance="bench")
                 for i in range(events)]
        started = time.perf_counter()
        for event in batch:
            publisher.publish(event)
        while publisher.published < events:
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - started
        await publisher.aclose()
        return events / elapsed

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a run under a minute")
    args = parser.parse_args()
    seconds, rounds, events = (4.0, 2, 100_000) if args.quick else (10.0, 3, 500_000)
    redis_url, redis_server = local_redis()
    bootstrap, kafka_server = kafka_bootstrap({TOPIC: 8})
    try:
        enqueue_us = enqueue_cost_us(bootstrap)
        produced = producer_rate(bootstrap, events)
        rps = http(redis_url, bootstrap, seconds, rounds)
    finally:
        for server in (redis_server, kafka_server):
            if server:
                server.stop()
    table = Table(title=f"event publishing (demo app, one uvicorn worker, load from {load_generator()})")
    for column in ("what", "figure"):
        table.add_column(column)
    table.add_row("requests/s, publishing off", f"{rps['off']:,.0f}")
    table.add_row("requests/s, publishing on", f"{rps['on']:,.0f}")
    table.add_row("ratio (target >= 0.95)", f"{rps['on'] / rps['off']:.3f}")
    table.add_row("request path: enqueue one event", f"{enqueue_us:.2f} µs (target < 5)")
    table.add_row("producer to local broker", f"{produced:,.0f} events/s")
    console.print(table)
    print(json.dumps({
        "http_rps_publish_off": round(rps["off"]),
        "http_rps_publish_on": round(rps["on"]),
        "publish_ratio": round(rps["on"] / rps["off"], 3),
        "enqueue_us": round(enqueue_us, 3),
        "producer_events_per_s": round(produced),
    }))


if __name__ == "__main__":
    main()
