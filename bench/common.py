"""Shared benchmark plumbing: servers, uvicorn processes, percentiles, printing."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from ratewarden.local import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent


def redis_for_bench() -> tuple[str, RedisServer | None]:
    url = os.environ.get("RATEWARDEN_REDIS_URL")
    if url:
        return url, None
    server = RedisServer().start()
    return server.url, server


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(values: list[float]) -> float:
    return statistics.median(values)


class Uvicorn:
    """A uvicorn server for ``target`` in a child process, one worker, fixed settings."""

    def __init__(self, target: str, env: dict[str, str], factory: bool = False) -> None:
        self.port = free_port()
        args = [sys.executable, "-m", "uvicorn", target, "--port", str(self.port), "--log-level", "warning",
                "--no-access-log", "--loop", "uvloop", "--http", "httptools", "--workers", "1"]
        if factory:
            args.append("--factory")
        self.proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **env})
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"uvicorn {target} did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def load(port: int, seconds: float, connections: int, path: str, header_file: Path | None) -> dict:
    """Run bench.loadgen in its own process against ``port``."""
    import json

    args = [sys.executable, "-m", "bench.loadgen", "--port", str(port), "--seconds", str(seconds),
            "--connections", str(connections), "--path", path]
    if header_file:
        args += ["--header-file", str(header_file)]
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])
