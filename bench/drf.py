"""Django/DRF benchmark: the demo project's requests/s with no throttle, with DRF's built-in
UserRateThrottle on Django's Redis cache, and with ratewarden's; and how many requests each
over-admits when 4 processes x 8 threads hammer one client limited to 100. Asserts nothing.

    python bench/drf.py [--quick]

The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "examples" / "demo_django"))

import redis
from rich.console import Console
from rich.table import Table

from bench.support.common import ROOT, ServerProcess, load, load_generator, median
from ratewarden.local import free_port
from ratewarden.local import redis_url as local_redis
from tests.helpers import hammer_django, run_processes

console = Console()
LIMIT, PROCESSES, THREADS, ATTEMPTS = 100, 4, 8, 12


def gunicorn(throttle: str, redis_url: str) -> ServerProcess:
    """The demo project under gunicorn: one worker, 8 threads, the given throttle."""
    port = free_port()
    env = {"DRFDEMO_THROTTLE": throttle, "RATEWARDEN_REDIS_URL": redis_url, "DRFDEMO_USER_RATE": "100000000/min",
           "DRFDEMO_NUM_PROXIES": "1", "RATEWARDEN_TRUSTED_PROXIES": "127.0.0.1/32"}
    args = [sys.executable, "-m", "gunicorn", "drfdemo.wsgi", "--chdir", str(ROOT / "examples" / "demo_django"),
            "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "8", "--worker-class", "gthread",
            "--log-level", "warning"]
    return ServerProcess(args, env, port, f"gunicorn ({throttle})")


def throughput(redis_url: str, seconds: float, rounds: int) -> dict[str, float]:
    header_file = Path(tempfile.mkstemp(suffix=".txt")[1])
    header_file.write_text("".join(f"X-Forwarded-For: 10.9.{i // 250}.{i % 250}\n" for i in range(1000)))
    servers = {name: gunicorn(name, redis_url) for name in ("none", "drf", "user")}
    rates: dict[str, list[float]] = {name: [] for name in servers}
    try:
        for server in servers.values():
            load(server.port, 1.0, 32, "/v1/items/7", header_file)
        for _ in range(rounds):  # interleaved
            for name, server in servers.items():
                result = load(server.port, seconds, 32, "/v1/items/7", header_file)
                rates[name].append(result["rps"])
                if set(result["statuses"]) != {"200"}:
                    console.print(f"[red]{name} answered {result['statuses']}[/red]")
    finally:
        for server in servers.values():
            server.stop()
        header_file.unlink()
    return {name: median(values) for name, values in rates.items()}


def overadmission(redis_url: str) -> dict[str, int]:
    client = redis.Redis.from_url(redis_url)
    # DRF's throttle alone: its cache on the same server, and no ratewarden middleware in front
    drf_alone = {"MIDDLEWARE": [], "CACHES": {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                                          "LOCATION": redis_url}}}
    found = {}
    for name, path, overrides in (("drf_builtin", "/exact-drf-builtin", drf_alone), ("ratewarden", "/exact", None)):
        client.flushall()
        admitted = run_processes(hammer_django, (redis_url, path, THREADS, ATTEMPTS, overrides), PROCESSES)
        if not all(isinstance(n, int) for n in admitted):
            raise RuntimeError(f"{name}: {admitted}")
        found[name] = sum(admitted) - LIMIT
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a run under a minute")
    args = parser.parse_args()
    seconds, rounds = (3.0, 2) if args.quick else (10.0, 3)
    redis_url, server = local_redis()
    try:
        rps = throughput(redis_url, seconds, rounds)
        over = overadmission(redis_url)
    finally:
        if server:
            server.stop()
    table = Table(title=f"demo DRF project, gunicorn 1 worker x 8 threads, load from {load_generator()}")
    for column in ("throttle", "requests/s", "× none", f"over-admitted (limit {LIMIT}, {PROCESSES}x{THREADS})"):
        table.add_column(column, justify="right")
    table.add_row("none", f"{rps['none']:,.0f}", "1.00", "")
    table.add_row("DRF UserRateThrottle, Django Redis cache", f"{rps['drf']:,.0f}",
                  f"{rps['drf'] / rps['none']:.2f}", f"{over['drf_builtin']:+d}")
    table.add_row("ratewarden UserRateThrottle", f"{rps['user']:,.0f}", f"{rps['user'] / rps['none']:.2f}",
                  f"{over['ratewarden']:+d}")
    console.print(table)
    print(json.dumps({
        "rps_none": round(rps["none"]),
        "rps_drf_builtin": round(rps["drf"]),
        "rps_ratewarden": round(rps["user"]),
        "ratio_drf_builtin": round(rps["drf"] / rps["none"], 3),
        "ratio_ratewarden": round(rps["user"] / rps["none"], 3),
        "drf_builtin_overadmitted": over["drf_builtin"],
        "ratewarden_overadmitted": over["ratewarden"],
    }))


if __name__ == "__main__":
    main()
