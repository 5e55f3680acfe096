"""``ratewarden up``: the whole embedded pipeline answers end to end, keeps running through a
``kill -9`` of its stream worker under traffic without losing or double-counting an event, gives
up with a non-zero exit on a crash loop, and leaves no process it started running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
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


def _child_running(parent: int, *argv: str) -> int | None:
    """The live child of ``parent`` whose command line contains every one of ``argv``."""
    for pid in _children(parent):
        try:
            command = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if all(arg.encode() in command for arg in argv) and process_alive(pid):
            return pid
    return None


def _get(url: str, token: str | None = None) -> object:
    request = urllib.request.Request(url, headers={"authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def _answers(url: str) -> bool:
    try:
        return _get(url) is not None
    except OSError:
        return False


def _start_up(tmp_path: Path, token: str, *options: str, env: dict[str, str] | None = None
              ) -> tuple[subprocess.Popen[bytes], Path, dict[str, str]]:
    """``ratewarden up`` in a process of its own; returns it, its output file and its URL table."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RATEWARDEN_")}, **(env or {})}
    env["RATEWARDEN_ADMIN_TOKEN"] = token
    env["COLUMNS"] = "200"
    log = tmp_path / "up.log"
    with open(log, "w") as out:
        up = subprocess.Popen([sys.executable, "-m", "ratewarden.cli", "up", "--data-dir", str(tmp_path / "var"),
                               *options], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    deadline = time.monotonic() + 150
    while "\nup; Ctrl-C" not in log.read_text():
        assert up.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.5)
    rows = [line.strip("│ ").split("│")[:2] for line in log.read_text().splitlines() if line.count("│") >= 3]
    return up, log, {k.strip(): v.strip() for k, v in rows}


class Traffic(threading.Thread):
    """Requests to the demo API from eight client addresses until stopped, counted by status."""

    def __init__(self, api: str) -> None:
        super().__init__(daemon=True)
        self.api = api
        self.statuses: Counter[int] = Counter()
        self.failures: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.done.is_set():
            n += 1
            request = urllib.request.Request(f"{self.api}/v1/items/{n % 50 + 1}",
                                             headers={"x-forwarded-for": f"198.51.100.{n % 8 + 1}"})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    self.statuses[response.status] += 1
            except urllib.error.HTTPError as exc:  # a 429 is an answer too, and an event
                self.statuses[exc.code] += 1
            except OSError as exc:
                self.failures.append(repr(exc))
            time.sleep(0.02)

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())


def _usage_total(admin: str, token: str) -> int:
    rows = _get(f"{admin}/api/v1/usage?start=2000-01-01T00:00:00", token)
    return sum(row["requests"] for row in rows)  # type: ignore[union-attr]


def _wait_counted(admin: str, token: str, sent: int) -> int:
    """Wait until ClickHouse counts exactly ``sent`` requests (never more)."""
    deadline = time.monotonic() + 90
    while (counted := _usage_total(admin, token)) != sent:
        assert counted < sent, f"{counted} counted for {sent} requests sent"
        assert time.monotonic() < deadline, f"{counted} of {sent} requests reached ClickHouse"
        time.sleep(1)
    return counted


def test_up_restarts_a_killed_worker_under_traffic_without_losing_an_event_and_sigterm_stops_everything(
        tmp_path: Path) -> None:
    token = "up-test-admin-token-0123456789"
    up, log, urls = _start_up(tmp_path, token)
    traffic = Traffic(urls.get("demo API", ""))
    try:
        admin = urls["admin API"].removesuffix("/docs")
        assert urls["admin token"] == token
        started = _children(up.pid)
        assert len(started) >= 4, started  # valkey, tansu, worker, demo API
        worker = _child_running(up.pid, "ratewarden.cli", "worker")
        assert worker is not None
        traffic.start()
        time.sleep(3)

        os.kill(worker, signal.SIGKILL)
        killed = time.monotonic()
        back = None
        while back is None or not _answers(f"{admin}/healthz"):  # the worker serves the admin API
            assert time.monotonic() - killed < 10, f"the worker was not back within 10 s:\n{log.read_text()}"
            back = _child_running(up.pid, "ratewarden.cli", "worker")
            back = None if back == worker else back
            time.sleep(0.1)
        print(f"worker back {time.monotonic() - killed:.1f} s after kill -9 (pid {worker} -> {back})")
        assert "stream-worker is back" in log.read_text()
        time.sleep(3)
        traffic.done.set()
        traffic.join(15)
        assert traffic.failures == [] and traffic.sent > 100, (traffic.statuses, traffic.failures[:3])

        counted = _wait_counted(admin, token, traffic.sent)
        print(f"requests sent {traffic.sent} {dict(traffic.statuses)} = events in ClickHouse {counted}")
        assert up.poll() is None, log.read_text()
        started = _children(up.pid)
    finally:
        traffic.done.set()
        up.send_signal(signal.SIGTERM)
        up.wait(90)
    assert up.returncode == 0, log.read_text()[-2000:]
    time.sleep(0.5)
    assert [pid for pid in started if process_alive(pid)] == []
    assert "stopped" in log.read_text()


def test_a_killed_broker_comes_back_empty_says_so_and_what_follows_is_counted_exactly(tmp_path: Path) -> None:
    token = "up-test-admin-token-0123456789"
    up, log, urls = _start_up(tmp_path, token)
    admin = urls["admin API"].removesuffix("/docs")
    try:
        first = Traffic(urls["demo API"])
        first.start()
        time.sleep(2)
        first.done.set()
        first.join(15)
        _wait_counted(admin, token, first.sent)  # all in ClickHouse: the broker's loss takes nothing counted

        broker = _child_running(up.pid, "broker", "--storage-engine")
        assert broker is not None
        os.kill(broker, signal.SIGKILL)
        deadline = time.monotonic() + 90
        while "lost everything it held" not in (text := log.read_text()) or \
                "stream-worker is back" not in text.split("lost everything it held")[1]:
            assert up.poll() is None and time.monotonic() < deadline, text[-3000:]
            time.sleep(0.5)

        second = Traffic(urls["demo API"])  # the new topic's offsets start at 0 again, below what is written
        second.start()
        time.sleep(3)
        second.done.set()
        second.join(15)
        assert first.failures == second.failures == [] and second.sent > 50, second.statuses
        _wait_counted(admin, token, first.sent + second.sent)
        print(f"{first.sent} requests before the broker's kill -9 and {second.sent} after, "
              f"{first.sent + second.sent} in ClickHouse")
        assert up.poll() is None
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(90)
    assert up.returncode == 0, log.read_text()[-2000:]


def test_a_hung_child_is_killed_and_restarted(tmp_path: Path) -> None:
    up, log, urls = _start_up(tmp_path, "up-test-admin-token-0123456789")
    try:
        api = _child_running(up.pid, "uvicorn")
        assert api is not None
        os.kill(api, signal.SIGSTOP)  # alive, its port open, answering nothing
        stopped = time.monotonic()
        deadline = stopped + 60  # 3 failed checks 5 s apart, then the restart
        while "demo-api is back" not in (text := log.read_text()):
            assert up.poll() is None and time.monotonic() < deadline, text[-3000:]
            time.sleep(0.5)
        print(f"the hung demo API was back {time.monotonic() - stopped:.1f} s after SIGSTOP")
        assert f"demo-api (pid {api}) did not answer 3 health checks in a row: killed it (SIGKILL)" in text
        assert not process_alive(api)
        assert _get(f"{urls['demo API']}/v1/items")
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(90)
    assert up.returncode == 0, log.read_text()[-2000:]


def test_a_crash_looping_child_stops_the_stack_with_a_non_zero_exit_naming_it(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text((Path(__file__).parent.parent / "examples" / "policy.yaml").read_text())
    up, log, _ = _start_up(tmp_path, "up-test-admin-token-0123456789", "--max-restarts", "2",
                           env={"RATEWARDEN_POLICY_FILE": str(policy)})
    try:
        started = _children(up.pid)
        api = _child_running(up.pid, "uvicorn")
        assert api is not None
        policy.write_text("tiers: {free: {rules: [{name: burst, limit: -1}]}}\n")  # every restart refuses it
        os.kill(api, signal.SIGKILL)
        up.wait(120)
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            up.wait(90)
    output = log.read_text()
    assert up.returncode == 1, output[-3000:]
    assert output.count("demo-api did not come back") == 2
    assert "demo-api exited with code 1 after 2 restarts within 300 s: a crash loop, so the stack stops" in output
    assert str(policy) in output.split("a crash loop")[-1]  # the end of its log says why
    time.sleep(0.5)
    assert [pid for pid in started if process_alive(pid)] == []


def test_a_part_that_cannot_start_stops_up_with_exit_1_and_says_why(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("tiers: {free: {rules: [{name: burst, limit: -1}]}}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATEWARDEN_")}
    env.update(RATEWARDEN_POLICY_FILE=str(policy), COLUMNS="200")
    run = subprocess.run([sys.executable, "-m", "ratewarden.cli", "up", "--data-dir", str(tmp_path / "var")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=240)
    output = run.stdout + run.stderr
    assert run.returncode == 1, output[-3000:]
    assert "the stack did not come up: " in output and f"{policy}: invalid policy" in output, output[-3000:]
    assert "Traceback (most recent call last)" not in output.split("the stack did not come up")[0]
    assert run.stdout.rstrip().endswith("stopped")
