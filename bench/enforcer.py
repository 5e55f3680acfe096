"""Enforcer benchmark: decisions/s and latency against the floor of a bare EVALSHA,
and demo-app requests/s with and without the middleware. Prints figures; asserts nothing.

    python bench/enforcer.py [--quick]

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
import redis.asyncio as aioredis
import uvloop
from rich.console import Console
from rich.table import Table

from bench.common import ROOT, Uvicorn, load, median, percentile, redis_for_bench
from enforcer import ApiKeyStore, Enforcer, EnforcerSettings, load_policy

SECRET = "bench-secret-0123456789abcdef"
POLICY = ROOT / "bench" / "policy.yaml"
CLIENTS = 1000
console = Console()


async def _drive(call, concurrency: int, seconds: float) -> tuple[float, list[float]]:
    """Run ``call(i)`` from ``concurrency`` tasks for ``seconds``: (calls/s, latencies in µs)."""
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds
    counter = 0

    async def worker() -> None:
        nonlocal counter
        while time.perf_counter() < stop_at:
            counter += 1
            started = time.perf_counter()
            await call(counter)
            latencies.append((time.perf_counter() - started) * 1e6)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies) / (time.perf_counter() - started), latencies


async def decisions(redis_url: str, seconds: float, rounds: int) -> dict[str, float]:
    floor_client = aioredis.Redis.from_url(redis_url, max_connections=64)
    sha = await floor_client.script_load("return 1")

    async def floor_call(_: int) -> None:
        await floor_client.evalsha(sha, 0)

    settings = EnforcerSettings(redis_url=redis_url, api_key_secret=SECRET)
    enforcer = Enforcer(load_policy(POLICY), settings)
    await enforcer.start()
    store = ApiKeyStore(redis.Redis.from_url(redis_url), SECRET.encode())
    keys = [store.create(owner=f"bench-{i}", tier="bench")[0] for i in range(CLIENTS)]
    ips = [f"10.{i // 250}.{i % 250}.1" for i in range(CLIENTS)]

    async def enforcer_call(i: int) -> None:
        identity = await enforcer.identify(ip=ips[i % CLIENTS], api_key=keys[i % CLIENTS])
        decision = await enforcer.decide(identity, "GET /v1/items/{item_id}")
        assert decision.allowed and not decision.degraded

    await _drive(enforcer_call, 64, 1.0)  # warm caches and connections
    await _drive(floor_call, 64, 0.5)
    results: dict[str, list[tuple[float, list[float]]]] = {}
    for _ in range(rounds):  # interleaved, so load drift hits both alike
        for concurrency in (1, 64):
            for name, call in (("floor", floor_call), ("enforcer", enforcer_call)):
                results.setdefault(f"{name}_c{concurrency}", []).append(await _drive(call, concurrency, seconds))
    await enforcer.aclose()
    await floor_client.aclose()
    figures: dict[str, float] = {}
    for label, runs in results.items():
        all_latencies = [x for _, lat in runs for x in lat]
        figures[f"{label}_per_s"] = median([rate for rate, _ in runs])
        figures[f"{label}_p50_us"] = percentile(all_latencies, 0.50)
        figures[f"{label}_p99_us"] = percentile(all_latencies, 0.99)
    return figures


def http(redis_url: str, seconds: float, rounds: int) -> dict[str, float]:
    store = ApiKeyStore(redis.Redis.from_url(redis_url), SECRET.encode())
    header_file = Path(tempfile.mkstemp(suffix=".txt")[1])
    header_file.write_text("".join(f"Authorization: Bearer {store.create(owner=f'http-{i}', tier='bench')[0]}\n"
                                   for i in range(64)))
    env = {"RATEWARDEN_REDIS_URL": redis_url, "RATEWARDEN_POLICY_FILE": str(POLICY),
           "RATEWARDEN_API_KEY_SECRET": SECRET}
    bare = Uvicorn("examples.demo_fastapi.app:unprotected_app", env, factory=True)
    enforced = Uvicorn("examples.demo_fastapi.app:app", env)
    try:
        for server in (bare, enforced):  # warm up
            load(server.port, 1.0, 64, "/v1/items/7", header_file)
        rates: dict[str, list[float]] = {"bare": [], "enforced": []}
        statuses: dict[str, dict] = {}
        for _ in range(rounds):
            for name, server in (("bare", bare), ("enforced", enforced)):
                result = load(server.port, seconds, 64, "/v1/items/7", header_file)
                rates[name].append(result["rps"])
                statuses[name] = result["statuses"]
    finally:
        bare.stop()
        enforced.stop()
        header_file.unlink()
    if set(statuses["enforced"]) != {"200"}:
        console.print(f"[red]enforced run answered {statuses['enforced']}[/red]")
    return {"http_rps_bare": median(rates["bare"]), "http_rps_enforced": median(rates["enforced"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a run under a minute")
    args = parser.parse_args()
    seconds, rounds, http_seconds = (2.0, 2, 4.0) if args.quick else (5.0, 3, 10.0)
    redis_url, server = redis_for_bench()
    console.print(f"Redis at {redis_url}; policy {POLICY.name}: 4 rules + daily and monthly quotas per decision, "
                  f"{CLIENTS} API-key clients")
    try:
        uvloop.install()
        figures = asyncio.run(decisions(redis_url, seconds, rounds))
        figures.update(http(redis_url, http_seconds, rounds))
    finally:
        if server:
            server.stop()

    table = Table(title="decisions (identify + decide, one process, uvloop)")
    for column in ("what", "concurrency", "per second", "p50 µs", "p99 µs"):
        table.add_column(column, justify="right")
    for name in ("floor", "enforcer"):
        for concurrency in (1, 64):
            label = f"{name}_c{concurrency}"
            table.add_row("EVALSHA 'return 1'" if name == "floor" else "ratewarden", str(concurrency),
                          f"{figures[label + '_per_s']:,.0f}", f"{figures[label + '_p50_us']:.0f}",
                          f"{figures[label + '_p99_us']:.0f}")
    console.print(table)
    ratio_c1 = figures["enforcer_c1_per_s"] / figures["floor_c1_per_s"]
    ratio_c64 = figures["enforcer_c64_per_s"] / figures["floor_c64_per_s"]
    http_ratio = figures["http_rps_enforced"] / figures["http_rps_bare"]
    console.print(f"ratio vs floor: c1 {ratio_c1:.2f}, c64 {ratio_c64:.2f} (target at c64 >= 0.80)")
    console.print(f"demo app, 64 connections: bare {figures['http_rps_bare']:,.0f} req/s, with ratewarden "
                  f"{figures['http_rps_enforced']:,.0f} req/s, ratio {http_ratio:.2f} (target >= 0.85)")
    print(json.dumps({
        "decisions_per_s_c1": round(figures["enforcer_c1_per_s"]),
        "decisions_per_s_c64": round(figures["enforcer_c64_per_s"]),
        "floor_per_s_c1": round(figures["floor_c1_per_s"]),
        "floor_per_s_c64": round(figures["floor_c64_per_s"]),
        "ratio_vs_floor_c1": round(ratio_c1, 3),
        "ratio_vs_floor_c64": round(ratio_c64, 3),
        "p50_us_c1": round(figures["enforcer_c1_p50_us"]),
        "p99_us_c1": round(figures["enforcer_c1_p99_us"]),
        "p99_us_c64": round(figures["enforcer_c64_p99_us"]),
        "floor_p99_us_c1": round(figures["floor_c1_p99_us"]),
        "http_rps_bare": round(figures["http_rps_bare"]),
        "http_rps_enforced": round(figures["http_rps_enforced"]),
        "http_ratio": round(http_ratio, 3),
    }))


if __name__ == "__main__":
    main()
