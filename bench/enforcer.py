"""Enforcer benchmark: decisions/s and latency against the floor of a bare EVALSHA,
and demo-app requests/s, p50/p99 and the API process's CPU per request with and without the
middleware, with request events published to a local Kafka broker and without. Prints figures;
asserts nothing.

    python bench/enforcer.py [--quick]

The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
import redis.asyncio as aioredis
import uvloop
from rich.console import Console
from rich.table import Table

from bench.support.common import ROOT, drive, load, load_generator, median, percentile, uvicorn_server
from ratewarden.enforcer import ApiKeyStore, Enforcer, EnforcerSettings, load_policy
from ratewarden.local import kafka_bootstrap
from ratewarden.local import redis_url as local_redis

SECRET = "bench-secret-0123456789abcdef"
POLICIES = {"single": ROOT / "bench" / "policy_single.yaml", "multi": ROOT / "bench" / "policy.yaml",
            "features": ROOT / "bench" / "policy_features.yaml"}
LABELS = {"single": "ratewarden, 1 rule", "multi": "ratewarden, 4 rules + 2 quotas",
          "features": "+ shadow, capacity, refunds, anchor"}
# the HTTP servers that also publish every request's event to Kafka, and their policies
EVENT_LABELS = {"single_events": "1 rule, events on", "multi_events": "4 rules + 2 quotas, events on"}
TOPIC = "ratewarden.requests"
CLIENTS = 1000
console = Console()


async def decisions(redis_url: str, seconds: float, rounds: int) -> dict[str, float]:
    floor_client = aioredis.Redis.from_url(redis_url, max_connections=64)
    sha = await floor_client.script_load("return 1")

    async def floor_call(_: int) -> None:
        await floor_client.evalsha(sha, 0)

    store = ApiKeyStore(redis.Redis.from_url(redis_url), SECRET.encode())
    keys = [store.create(owner=f"bench-{i}", tier="bench")[0] for i in range(CLIENTS)]
    ips = [f"10.{i // 250}.{i % 250}.1" for i in range(CLIENTS)]
    settings = EnforcerSettings(redis_url=redis_url, api_key_secret=SECRET)
    enforcers = {name: Enforcer(load_policy(path), settings) for name, path in POLICIES.items()}
    calls = {"floor": floor_call}
    for name, enforcer in enforcers.items():
        await enforcer.start()

        async def enforcer_call(i: int, enforcer: Enforcer = enforcer) -> None:
            identity = await enforcer.identify(ip=ips[i % CLIENTS], api_key=keys[i % CLIENTS])
            decision = await enforcer.decide(identity, "GET /v1/items/{item_id}")
            assert decision.allowed and not decision.degraded

        calls[name] = enforcer_call
    for call in calls.values():  # warm caches and connections
        await drive(call, 64, 0.5)
    results: dict[str, list[tuple[float, list[float]]]] = {}
    for _ in range(rounds):  # interleaved, so load drift hits all alike
        for concurrency in (1, 64):
            for name, call in calls.items():
                results.setdefault(f"{name}_c{concurrency}", []).append(await drive(call, concurrency, seconds))
    for enforcer in enforcers.values():
        await enforcer.aclose()
    await floor_client.aclose()
    figures: dict[str, float] = {}
    for label, runs in results.items():
        all_latencies = [x for _, lat in runs for x in lat]
        figures[f"{label}_per_s"] = median([rate for rate, _ in runs])
        figures[f"{label}_p50_us"] = percentile(all_latencies, 0.50)
        figures[f"{label}_p99_us"] = percentile(all_latencies, 0.99)
    return figures


def http(redis_url: str, bootstrap: str, seconds: float, rounds: int, path: str) -> dict[str, float]:
    store = ApiKeyStore(redis.Redis.from_url(redis_url), SECRET.encode())
    header_file = Path(tempfile.mkstemp(suffix=".txt")[1])
    header_file.write_text("".join(f"Authorization: Bearer {store.create(owner=f'http-{i}', tier='bench')[0]}\n"
                                   for i in range(64)))
    env = {"RATEWARDEN_REDIS_URL": redis_url, "RATEWARDEN_API_KEY_SECRET": SECRET}
    servers = {"bare": uvicorn_server("ratewarden.examples.demo_fastapi.app:unprotected_app", env, factory=True)}
    try:
        for name, policy_file in POLICIES.items():
            servers[name] = uvicorn_server("ratewarden.examples.demo_fastapi.app:app",
                                           {**env, "RATEWARDEN_POLICY_FILE": str(policy_file)})
        for name in EVENT_LABELS:
            servers[name] = uvicorn_server("ratewarden.examples.demo_fastapi.app:app", {
                **env, "RATEWARDEN_POLICY_FILE": str(POLICIES[name.removesuffix("_events")]),
                "RATEWARDEN_KAFKA_BOOTSTRAP": bootstrap,
                "RATEWARDEN_SPILL_DIR": tempfile.mkdtemp(prefix="bench-spill-")})
        for server in servers.values():  # warm up
            load(server.port, 1.0, 64, path, header_file)
        rates: dict[str, list[float]] = {name: [] for name in servers}
        tails: dict[str, list[tuple[float, float]]] = {name: [] for name in servers}
        cpu_us: dict[str, list[float]] = {name: [] for name in servers}
        for _ in range(rounds):  # interleaved, same load generator and settings for all
            for name, server in servers.items():
                cpu_before = server.cpu_seconds()
                result = load(server.port, seconds, 64, path, header_file)
                served = result["rps"] * seconds
                cpu_us[name].append((server.cpu_seconds() - cpu_before) / served * 1e6)
                rates[name].append(result["rps"])
                if "p99_ms" in result:  # wrk reports latencies; the Python load generator does not
                    tails[name].append((result["p50_ms"], result["p99_ms"]))
                if set(result["statuses"]) != {"200"}:  # a benchmark of denials would mislead
                    console.print(f"[red]{name} answered {result['statuses']}[/red]")
    finally:
        for server in servers.values():
            server.stop()
        header_file.unlink()
    figures = {f"http_rps_{name}": median(values) for name, values in rates.items()}
    figures |= {f"api_cpu_us_{name}": median(values) for name, values in cpu_us.items()}
    for name, values in tails.items():
        if values:
            figures[f"http_p50_ms_{name}"] = median([p50 for p50, _ in values])
            figures[f"http_p99_ms_{name}"] = median([p99 for _, p99 in values])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a run under a minute")
    parser.add_argument("--path", default="/v1/items/7",
                        help="demo endpoint to load (default: the lightest one, the worst case for the ratio)")
    args = parser.parse_args()
    seconds, rounds, http_seconds = (1.5, 2, 3.0) if args.quick else (5.0, 3, 10.0)
    redis_url, server = local_redis()
    bootstrap, kafka_server = kafka_bootstrap({TOPIC: 8})
    console.print(f"Redis at {redis_url}; {CLIENTS} API-key clients; policies: single = one rule per decision "
                  "(as the peers were measured), multi = 4 rules + daily and monthly quotas per decision, "
                  "features = multi + a shadow rule, the route's capacity by tier, refunds and a billing anchor")
    try:
        uvloop.install()
        figures = asyncio.run(decisions(redis_url, seconds, rounds))
        figures.update(http(redis_url, bootstrap, http_seconds, rounds, args.path))
    finally:
        if server:
            server.stop()
        if kafka_server:
            kafka_server.stop()

    table = Table(title="decisions (identify + decide, one process, uvloop)")
    for column in ("what", "concurrency", "per second", "× floor", "p50 µs", "p99 µs"):
        table.add_column(column, justify="right")
    for name, label in {"floor": "EVALSHA 'return 1'", **LABELS}.items():
        for concurrency in (1, 64):
            key = f"{name}_c{concurrency}"
            ratio = figures[key + "_per_s"] / figures[f"floor_c{concurrency}_per_s"]
            table.add_row(label, str(concurrency), f"{figures[key + '_per_s']:,.0f}", f"{ratio:.2f}",
                          f"{figures[key + '_p50_us']:.0f}", f"{figures[key + '_p99_us']:.0f}")
    console.print(table)
    http_table = Table(title=f"demo app over HTTP: GET {args.path} (one uvicorn worker, 64 keep-alive "
                             f"connections, load from {load_generator()})")
    for column in ("app", "requests/s", "× bare", "p50 ms", "p99 ms", "p99 × bare", "API CPU µs/req"):
        http_table.add_column(column, justify="right")
    for name, label in {"bare": "no middleware", **LABELS, **EVENT_LABELS}.items():
        p50, p99 = figures.get(f"http_p50_ms_{name}"), figures.get(f"http_p99_ms_{name}")
        http_table.add_row(label, f"{figures[f'http_rps_{name}']:,.0f}",
                           f"{figures[f'http_rps_{name}'] / figures['http_rps_bare']:.2f}",
                           f"{p50:.2f}" if p50 else "-", f"{p99:.2f}" if p99 else "-",
                           f"{p99 / figures['http_p99_ms_bare']:.2f}" if p99 else "-",
                           f"{figures[f'api_cpu_us_{name}']:.0f}")
    console.print(http_table)
    console.print("targets: decisions at c64 >= 0.80 × floor; HTTP >= 0.85 × bare; p99 <= 1.5 × bare with events "
                  "on; API CPU added <= 15 µs (1 rule), <= 25 µs (4 rules + 2 quotas); the fair-usage features "
                  "within 5% of the same policy without them")

    def added(name: str) -> float:
        return round(figures[f"api_cpu_us_{name}"] - figures["api_cpu_us_bare"], 1)


    def ratio(a: str, b: str) -> float:
        return round(figures[a] / figures[b], 3)

    print(json.dumps({
        "decisions_per_s_c1": round(figures["single_c1_per_s"]),
        "decisions_per_s_c64": round(figures["single_c64_per_s"]),
        "floor_per_s_c1": round(figures["floor_c1_per_s"]),
        "floor_per_s_c64": round(figures["floor_c64_per_s"]),
        "ratio_vs_floor_c1": ratio("single_c1_per_s", "floor_c1_per_s"),
        "ratio_vs_floor_c64": ratio("single_c64_per_s", "floor_c64_per_s"),
        "p50_us_c1": round(figures["single_c1_p50_us"]),
        "p99_us_c1": round(figures["single_c1_p99_us"]),
        "p99_us_c64": round(figures["single_c64_p99_us"]),
        "floor_p99_us_c1": round(figures["floor_c1_p99_us"]),
        "http_rps_bare": round(figures["http_rps_bare"]),
        "http_rps_enforced": round(figures["http_rps_single"]),
        "http_ratio": ratio("http_rps_single", "http_rps_bare"),
        "multi_decisions_per_s_c64": round(figures["multi_c64_per_s"]),
        "multi_ratio_vs_floor_c64": ratio("multi_c64_per_s", "floor_c64_per_s"),
        "multi_p99_us_c1": round(figures["multi_c1_p99_us"]),
        "multi_http_rps_enforced": round(figures["http_rps_multi"]),
        "multi_http_ratio": ratio("http_rps_multi", "http_rps_bare"),
        "features_ratio_vs_floor_c64": ratio("features_c64_per_s", "floor_c64_per_s"),
        "features_http_ratio": ratio("http_rps_features", "http_rps_bare"),
        "features_vs_multi_c1": ratio("features_c1_per_s", "multi_c1_per_s"),
        "features_vs_multi_c64": ratio("features_c64_per_s", "multi_c64_per_s"),
        "features_vs_multi_http": ratio("http_rps_features", "http_rps_multi"),
        "api_cpu_us_bare": round(figures["api_cpu_us_bare"], 1),
        "api_cpu_us_added_single": added("single"),
        "api_cpu_us_added_multi": added("multi"),
        "api_cpu_us_added_single_events": added("single_events"),
        "api_cpu_us_added_multi_events": added("multi_events"),
        "http_ratio_events": ratio("http_rps_single_events", "http_rps_bare"),
        **({"http_p50_ms_bare": round(figures["http_p50_ms_bare"], 2),
            "http_p99_ms_bare": round(figures["http_p99_ms_bare"], 2),
            "http_p50_ms_enforced": round(figures["http_p50_ms_single"], 2),
            "http_p99_ms_enforced": round(figures["http_p99_ms_single"], 2),
            "http_p99_ms_enforced_events": round(figures["http_p99_ms_single_events"], 2),
            # the goal's figure: one rule, events published
            "http_p99_ratio": ratio("http_p99_ms_single_events", "http_p99_ms_bare"),
            "http_p99_ratio_events_off": ratio("http_p99_ms_single", "http_p99_ms_bare"),
            "multi_http_p99_ratio": ratio("http_p99_ms_multi", "http_p99_ms_bare"),
            "multi_http_p99_ratio_events": ratio("http_p99_ms_multi_events", "http_p99_ms_bare")}
           if "http_p99_ms_bare" in figures else {}),
    }))


if __name__ == "__main__":
    main()
