"""A small HTTP/1.1 keep-alive load generator (asyncio + uvloop), run as its own process.

Each connection sends one request at a time with its own headers (e.g. its own API
key) for a fixed duration and counts responses by status. Usage::

    python -m bench.support.loadgen --port 8000 --connections 64 --seconds 10 --path /v1/items \
        [--header-file keys.txt]   # one "Name: value" header per line, assigned per connection
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter


async def _connection(host: str, port: int, request: bytes, stop_at: float, statuses: Counter) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.monotonic() < stop_at:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
                    break
            if length:
                await reader.readexactly(length)
            statuses[status] += 1
    finally:
        writer.close()


async def run_load(host: str, port: int, paths: list[str], headers: list[str], connections: int,
                   seconds: float) -> dict[str, object]:
    statuses: Counter = Counter()
    stop_at = time.monotonic() + seconds
    requests = []
    for i in range(connections):
        header = headers[i % len(headers)] + "\r\n" if headers else ""
        path = paths[i % len(paths)]
        requests.append(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{header}\r\n".encode())
    started = time.monotonic()
    await asyncio.gather(*(_connection(host, port, requests[i], stop_at, statuses) for i in range(connections)))
    elapsed = time.monotonic() - started
    total = sum(statuses.values())
    return {"requests": total, "seconds": elapsed, "rps": total / elapsed, "statuses": dict(statuses)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--path", action="append", default=[])
    parser.add_argument("--header-file")
    args = parser.parse_args()
    headers = []
    if args.header_file:
        with open(args.header_file) as handle:
            headers = [line.strip() for line in handle if line.strip()]
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(run_load(args.host, args.port, args.path or ["/"], headers, args.connections, args.seconds))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
