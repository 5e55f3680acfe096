"""Where the middleware's time goes, without HTTP: the demo app called in-process (64 requests
at a time through the ASGI interface) bare, with the enforcer, and with the enforcer's Redis
call replaced by a fixed decision. Prints microseconds per request; asserts nothing.

    python bench/middleware_cost.py [--quick] [--requests 64000] [--rounds 2]

Batches of 64 wait for their slowest request, so Redis time is not overlapped here as it is
under a real server: read "enforced" as an upper bound, "no Redis" as the middleware's own work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
import uvloop

from ratewarden.enforcer import ApiKeyStore, Enforcer, EnforcerSettings, load_policy
from ratewarden.examples.demo_fastapi.app import create_app
from ratewarden.local import redis_url as local_redis

SECRET = "bench-secret-0123456789abcdef"
POLICY = Path(__file__).resolve().parent / "policy_single.yaml"
ROUTE = "GET /v1/items/{item_id}"


async def per_request_us(app: Any, requests: int, headers: list[tuple[bytes, bytes]]) -> float:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": "/v1/items/7", "raw_path": b"/v1/items/7", "query_string": b"", "root_path": "",
             "headers": headers, "client": ("127.0.0.1", 1234), "server": ("127.0.0.1", 8000)}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    started = time.perf_counter()
    for _ in range(requests // 64):
        await asyncio.gather(*(app(dict(scope), receive, send) for _ in range(64)))
    return (time.perf_counter() - started) / requests * 1e6


async def measure(redis_url: str, requests: int, rounds: int) -> dict[str, float]:
    key, _ = ApiKeyStore(redis.Redis.from_url(redis_url), SECRET.encode()).create("bench", tier="bench")
    headers = [(b"host", b"bench"), (b"authorization", f"Bearer {key}".encode()), (b"user-agent", b"bench")]
    settings = EnforcerSettings(redis_url=redis_url, api_key_secret=SECRET)
    enforced = Enforcer(load_policy(POLICY), settings)
    stubbed = Enforcer(load_policy(POLICY), settings)
    apps = {"bare": create_app(protected=False), "enforced": create_app(enforced), "no Redis": create_app(stubbed)}
    await per_request_us(apps["no Redis"], 64, headers)  # starts it, caches the key
    fixed = await stubbed.decide(await stubbed.identify(ip="127.0.0.1", api_key=key), ROUTE)

    async def decide(identity: Any, route: str, route_limits: Any = None) -> Any:
        return fixed

    stubbed.decide = decide  # type: ignore[method-assign]
    for app in apps.values():
        await per_request_us(app, 6400, headers)
    runs: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(rounds):
        for name, app in apps.items():
            runs[name].append(await per_request_us(app, requests, headers))
    for enforcer in (enforced, stubbed):
        await enforcer.aclose()
    return {name: min(values) for name, values in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a run of a few seconds (12,800 requests, 2 rounds)")
    parser.add_argument("--requests", type=int, default=64_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if args.quick:
        args.requests = 12_800
    url, server = local_redis()
    try:
        uvloop.install()
        figures = asyncio.run(measure(url, args.requests, args.rounds))
    finally:
        if server:
            server.stop()
    for name, value in figures.items():
        print(f"{name:>9}: {value:6.1f} µs per request (+{value - figures['bare']:.1f} over bare)")
    print(json.dumps({f"{name.replace(' ', '_')}_us": round(value, 1) for name, value in figures.items()}))


if __name__ == "__main__":
    main()
