"""Shared benchmark plumbing: servers, uvicorn processes, percentiles, printing."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import httpx

from ratewarden.local import free_port

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


async def drive(call: Callable[[int], Awaitable[T]], concurrency: int, seconds: float,
                check: Callable[[T], None] | None = None) -> tuple[float, list[float]]:
    """Run ``call(i)`` from ``concurrency`` tasks for ``seconds``, passing each result to ``check``:
    (calls/s, latencies in µs)."""
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds
    counter = 0

    async def worker() -> None:
        nonlocal counter
        while time.perf_counter() < stop_at:
            counter += 1
            started = time.perf_counter()
            result = await call(counter)
            latencies.append((time.perf_counter() - started) * 1e6)
            if check is not None:
                check(result)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies) / (time.perf_counter() - started), latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(values: list[float]) -> float:
    return statistics.median(values)


class ServerProcess:
    """An HTTP server under test in a child process, ready once ``/healthz`` answers 200."""

    def __init__(self, args: list[str], env: dict[str, str], port: int, name: str) -> None:
        self.port = port
        self.proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **env})
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"{name} did not start")
            time.sleep(0.1)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def uvicorn_server(target: str, env: dict[str, str], factory: bool = False) -> ServerProcess:
    """``target`` under uvicorn: one worker, uvloop, httptools, no access log (the same for every run)."""
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", target, "--port", str(port), "--log-level", "warning",
            "--no-access-log", "--loop", "uvloop", "--http", "httptools", "--workers", "1"]
    return ServerProcess(args + (["--factory"] if factory else []), env, port, f"uvicorn {target}")


_WRK_SCRIPT = """
local headers, n = {}, 0
for line in io.lines(os.getenv("BENCH_HEADER_FILE")) do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  headers[#headers + 1] = {name, value}
end
request = function()
  n = n + 1
  local h = headers[(n % #headers) + 1]
  return wrk.format(nil, nil, {[h[1]] = h[2]})
end
"""


def load_generator() -> str:
    """'wrk' if installed (C, leaves the CPU to the server under test), else the Python one."""
    return "wrk" if shutil.which("wrk") else "python"


def load(port: int, seconds: float, connections: int, path: str, header_file: Path | None) -> dict:
    """Drive ``port`` with wrk (if installed) or bench.loadgen, in another process."""
    import json

    if load_generator() == "wrk":
        return _wrk(port, seconds, connections, path, header_file)
    args = [sys.executable, "-m", "bench.support.loadgen", "--port", str(port), "--seconds", str(seconds),
            "--connections", str(connections), "--path", path]
    if header_file:
        args += ["--header-file", str(header_file)]
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _wrk(port: int, seconds: float, connections: int, path: str, header_file: Path | None) -> dict:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(_WRK_SCRIPT)
    try:
        args = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{max(1, round(seconds))}s", "--latency"]
        if header_file:
            args += ["-s", str(script)]
        out = subprocess.run([*args, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True,
                             env={**os.environ, "BENCH_HEADER_FILE": str(header_file or "")}).stdout
    finally:
        script.unlink()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    statuses = {"200": "all"} if not non_2xx else {"non-2xx": int(non_2xx.group(1))}
    return {"rps": rps, "statuses": statuses, "p50_ms": _wrk_percentile(out, 50), "p99_ms": _wrk_percentile(out, 99)}


def _wrk_percentile(out: str, q: int) -> float:
    """A latency percentile of wrk's --latency distribution, in milliseconds."""
    value, unit = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
