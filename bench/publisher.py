"""Publisher benchmark: the demo app's requests/s with event publishing off and on, once per
batch compression (servers interleaved round by round, same settings otherwise), what handing
one event to the publisher costs the request path, and the producer's sustained events/s to
the local broker per compression. Prints figures; asserts nothing.

    python bench/publisher.py [--quick] [--compressions none,lz4,...]

The last line is one JSON object: the figures of the default compression under the top-level
names, every compression's under ``by_compression``.
"""

from __future__ import annotations

import argparse
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
from ratewarden.enforcer.identity import Identity
from ratewarden.enforcer.publisher import EventPublisher
from ratewarden.local import kafka_bootstrap
from ratewarden.local import redis_url as local_redis

SECRET = "bench-secret-0123456789abcdef"
TOPIC = "ratewarden.requests"
COMPRESSIONS = ("none", "lz4", "zstd", "snappy", "gzip")
console = Console()


def http(redis_url: str, bootstrap: str, seconds: float, rounds: int, compressions: list[str]) -> dict[str, float]:
    """Median requests/s of the demo app with publishing off ("off") and on with each compression."""
    store = ApiKeyStore(redis.Redis.from_url(redis_url), SECRET.encode())
    header_file = Path(tempfile.mkstemp(suffix=".txt")[1])
    header_file.write_text("".join(f"Authorization: Bearer {store.create(owner=f'p-{i}', tier='bench')[0]}\n"
                                   for i in range(64)))
    env = {"RATEWARDEN_REDIS_URL": redis_url, "RATEWARDEN_API_KEY_SECRET": SECRET,
           "RATEWARDEN_POLICY_FILE": str(ROOT / "bench" / "policy_single.yaml")}
    app = "ratewarden.examples.demo_fastapi.app:app"
    servers = {"off": uvicorn_server(app, {**env, "RATEWARDEN_SPILL_DIR": tempfile.mkdtemp(prefix="bench-spill-")})}
    for compression in compressions:
        servers[compression] = uvicorn_server(app, {
            **env, "RATEWARDEN_KAFKA_BOOTSTRAP": bootstrap, "RATEWARDEN_PUBLISH_COMPRESSION": compression,
            "RATEWARDEN_SPILL_DIR": tempfile.mkdtemp(prefix="bench-spill-")})
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


def producer(bootstrap: str, events: int, compression: str) -> tuple[float, float]:
    """(µs the request path spends handing over one event, sustained events/s from there to acknowledged)."""
    settings = EnforcerSettings(kafka_bootstrap=bootstrap, kafka_topic=TOPIC, publish_queue_size=events,
                                publish_compression=compression,  # type: ignore[arg-type]
                                spill_dir=Path(tempfile.mkdtemp(prefix="bench-spill-")), publish_linger_ms=5)
    publisher = EventPublisher(settings)
    publisher.start_thread()
    while not publisher.connected:
        time.sleep(0.01)
    route = "GET /v1/items/{item_id}"
    decisions = [Decision(True, "paid", route, f"k:key_{i % 500}", now_us=1,
                          identity=Identity(f"k:key_{i % 500}", "paid", "203.0.113.9")) for i in range(events)]
    publish = publisher.publish_decision
    started = time.perf_counter()
    for decision in decisions:  # what the middleware does after each response
        publish(decision, "GET", "/v1/items/7", "bench/1.0", 200, 1.0, "api", "bench")
    handed = time.perf_counter() - started
    while publisher.published < events:
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    publisher.close()
    stats = publisher.stats()
    if stats.spilled or stats.dropped:  # the rate would measure the disk, not the producer
        raise RuntimeError(f"events spilled during the producer run: {stats}")
    return handed / events * 1e6, events / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a run under two minutes")
    parser.add_argument("--compressions", default=",".join(COMPRESSIONS),
                        help=f"comma-separated, of {', '.join(COMPRESSIONS)} (default: all)")
    args = parser.parse_args()
    compressions = [c.strip() for c in args.compressions.split(",") if c.strip()]
    unknown = set(compressions) - set(COMPRESSIONS)
    if unknown or not compressions:
        parser.error(f"--compressions: unknown {', '.join(sorted(unknown)) or '(none given)'}")
    default = EnforcerSettings.model_fields["publish_compression"].default
    seconds, rounds, events = (4.0, 2, 100_000) if args.quick else (10.0, 3, 500_000)
    redis_url, redis_server = local_redis()
    bootstrap, kafka_server = kafka_bootstrap({TOPIC: 8})
    try:
        produced = {c: producer(bootstrap, events, c) for c in compressions}
        rps = http(redis_url, bootstrap, seconds, rounds, compressions)
    finally:
        for server in (redis_server, kafka_server):
            if server:
                server.stop()
    table = Table(title=f"event publishing (demo app, one uvicorn worker, load from {load_generator()}; "
                        f"publishing off: {rps['off']:,.0f} requests/s)")
    for column in ("compression", "requests/s on", "on ÷ off (target >= 0.95)", "request path µs/event",
                   "producer events/s"):
        table.add_column(column, justify="right")
    by_compression = {}
    for c in compressions:
        figures = {"http_rps_publish_on": round(rps[c]), "publish_ratio": round(rps[c] / rps["off"], 3),
                   "enqueue_us": round(produced[c][0], 3), "producer_events_per_s": round(produced[c][1])}
        by_compression[c] = figures
        table.add_row(c + (" (default)" if c == default else ""), f"{rps[c]:,.0f}", f"{figures['publish_ratio']:.3f}",
                      f"{produced[c][0]:.2f}", f"{produced[c][1]:,.0f}")
    console.print(table)
    headline = by_compression.get(default) or by_compression[compressions[0]]
    print(json.dumps({
        "http_rps_publish_off": round(rps["off"]),
        **headline,
        "compression": default if default in by_compression else compressions[0],
        "by_compression": by_compression,
    }))


if __name__ == "__main__":
    main()
