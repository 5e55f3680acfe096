"""``ratewarden up``: the whole embedded pipeline answers end to end, and SIGTERM leaves no
process it started running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .helpers import process_alive


def _children(pid: int) -> set[int]:
    """Every descendant of ``pid`` (they run in process groups of their own)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _get(url: str, token: str | None = None) -> object:
    request = urllib.request.Request(url, headers={"authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def test_up_serves_the_pipeline_and_sigterm_stops_every_process(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATEWARDEN_")}
    env["RATEWARDEN_ADMIN_TOKEN"] = token = "up-test-admin-token-0123456789"
    env["COLUMNS"] = "200"
    log = tmp_path / "up.log"
    with open(log, "w") as out:
        up = subprocess.Popen([sys.executable, "-m", "ratewarden.cli", "up", "--data-dir", str(tmp_path / "var")],
                              stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 150
        while "Ctrl-C" not in log.read_text():
            assert up.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        text = log.read_text()
        urls = dict(line.strip("│ ").split("│")[:2] for line in text.splitlines() if line.count("│") >= 3)
        urls = {k.strip(): v.strip() for k, v in urls.items()}
        api, admin = urls["demo API"], urls["admin API"].removesuffix("/docs")
        assert urls["admin token"] == token
        for _ in range(25):
            assert _get(f"{api}/v1/items")
        deadline = time.monotonic() + 60
        while sum(row["requests"] for row in _get(f"{admin}/api/v1/usage", token)) < 25:  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "requests did not reach ClickHouse"
            time.sleep(0.5)
        started = _children(up.pid)
        assert len(started) >= 4, started  # valkey, tansu, worker, demo API
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(90)
    assert up.returncode == 0, log.read_text()[-2000:]
    time.sleep(0.5)
    assert [pid for pid in started if process_alive(pid)] == []
    assert "stopped" in log.read_text()
