"""The supervisor's policy, on stand-in processes and a stand-in clock (pure logic): backoff,
crash loops, the window, dependents and failed restarts. ``tests/test_up.py`` runs it for real."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from ratewarden.supervise import CrashLoop, RestartPolicy, Supervisor, describe_exit


class Process:
    """What the supervisor reads of a child: name, pid, whether it runs, how it ended, its log."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.pid = 100
        self.running = True
        self.returncode: int | None = None
        self.log_path = Path(f"/logs/{name}.log")

    def die(self, returncode: int = 1) -> None:
        self.running, self.returncode = False, returncode

    def is_ready(self) -> bool:
        return self.healthy

    healthy = True

    def log_tail(self, lines: int = 20) -> str:
        return f"last words of {self.name}"


class Stack:
    def __init__(self, *processes: Process, fail: int = 0) -> None:
        self.processes = list(processes)
        self.restarted: list[str] = []
        self.fail = fail  # the next restarts that fail
        self.depend: dict[str, list[Process]] = {}

    def restart(self, process: Process) -> None:
        self.restarted.append(process.name)
        if self.fail:
            self.fail -= 1
            process.die(3)
            raise RuntimeError(f"{process.name} exited with code 3; log:\n...")
        process.running, process.returncode, process.pid = True, None, process.pid + 1

    def dependents(self, process: Process) -> list[Process]:
        return self.depend.get(process.name, [])


class Stopped:
    """``threading.Event`` as the supervisor uses it, recording the backoffs instead of sleeping."""

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock
        self.waits: list[float] = []

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.clock[0] += seconds
        return False


def _supervisor(stack: Stack, policy: RestartPolicy) -> tuple[Supervisor, list[float], list[str]]:
    clock = [0.0]
    said: list[str] = []
    return Supervisor(stack, policy, said.append, clock=lambda: clock[0]), clock, said  # type: ignore[arg-type]


def test_a_dead_child_is_restarted_after_a_backoff_that_doubles_and_is_capped() -> None:
    worker = Process("stream-worker")
    stack = Stack(worker)
    supervisor, clock, said = _supervisor(stack, RestartPolicy(max_restarts=10, window_s=1000, backoff_s=0.5,
                                                               max_backoff_s=3))
    stopped = Stopped(clock)
    for _ in range(5):
        worker.die(-signal.SIGKILL)
        supervisor.recover(worker, stopped)  # type: ignore[arg-type]
        assert worker.running
    assert stopped.waits == [0.5, 1, 2, 3, 3]
    assert stack.restarted == ["stream-worker"] * 5
    assert said[0] == ("stream-worker (pid 100) was killed by SIGKILL; restarting it in 0.5 s "
                       "(restart 1 of at most 10 within 1000 s)")
    assert said[1].startswith("stream-worker is back (pid 101, ready")


def test_more_restarts_than_allowed_within_the_window_is_a_crash_loop_naming_the_child() -> None:
    api = Process("demo-api")
    supervisor, clock, _ = _supervisor(Stack(api), RestartPolicy(max_restarts=2, window_s=60))
    stopped = Stopped(clock)
    for _ in range(2):
        api.die(1)
        supervisor.recover(api, stopped)  # type: ignore[arg-type]
    api.die(1)
    with pytest.raises(CrashLoop) as raised:
        supervisor.recover(api, stopped)  # type: ignore[arg-type]
    message = str(raised.value)
    assert message.startswith("demo-api exited with code 1 after 2 restarts within 60 s: a crash loop")
    assert "/logs/demo-api.log" in message and "last words of demo-api" in message


def test_restarts_older_than_the_window_are_forgotten() -> None:
    api = Process("demo-api")
    supervisor, clock, _ = _supervisor(Stack(api), RestartPolicy(max_restarts=2, window_s=60, backoff_s=1))
    stopped = Stopped(clock)
    for _ in range(6):  # two quick deaths, then a quiet minute, again and again
        for _ in range(2):
            api.die(1)
            supervisor.recover(api, stopped)  # type: ignore[arg-type]
        clock[0] += 61
    assert stopped.waits == [1, 2] * 6  # the backoff starts over too


def test_a_failed_restart_counts_and_the_next_death_is_seen_as_one_more() -> None:
    api = Process("demo-api")
    stack = Stack(api, fail=2)
    supervisor, clock, said = _supervisor(stack, RestartPolicy(max_restarts=3, window_s=60))
    stopped = Stopped(clock)
    api.die(1)
    for _ in range(3):
        supervisor.recover(api, stopped)  # type: ignore[arg-type]
    assert api.running and stack.restarted == ["demo-api"] * 3
    assert said[1] == "demo-api did not come back: exited with code 3 (its log: /logs/demo-api.log)"
    api.die(1)
    with pytest.raises(CrashLoop, match="after 3 restarts"):
        supervisor.recover(api, stopped)  # type: ignore[arg-type]


def test_the_dependents_of_a_restarted_child_are_restarted_after_it() -> None:
    broker, worker, api = Process("kafka"), Process("stream-worker"), Process("demo-api")
    stack = Stack(broker, worker, api)
    stack.depend["kafka"] = [worker]
    supervisor, clock, said = _supervisor(stack, RestartPolicy())
    broker.die(-signal.SIGKILL)
    supervisor.recover(broker, Stopped(clock))  # type: ignore[arg-type]
    assert stack.restarted == ["kafka", "stream-worker"]
    assert "restarting stream-worker too: it depends on kafka" in said


def test_a_stop_during_the_backoff_restarts_nothing() -> None:
    class StopNow(Stopped):
        def wait(self, seconds: float) -> bool:
            return True

    api = Process("demo-api")
    stack = Stack(api)
    supervisor, clock, _ = _supervisor(stack, RestartPolicy())
    api.die(0)
    supervisor.recover(api, StopNow(clock))  # type: ignore[arg-type]
    assert stack.restarted == []


def test_a_running_child_is_hung_only_after_enough_failed_health_checks_in_a_row() -> None:
    api = Process("demo-api")
    supervisor, clock, said = _supervisor(Stack(api), RestartPolicy(check_every_s=5, unhealthy_after=3))
    verdicts = []
    for healthy in [False, False, True, False, False, False]:
        clock[0] += 5  # a check is due every 5 s; between them none is made
        api.healthy = healthy
        verdicts.append(supervisor.hung(api))
        assert not supervisor.hung(api)
    assert verdicts == [False, False, False, False, False, True]
    supervisor.recover(api, Stopped(clock), "(pid 100) did not answer 3 health checks in a row: killed it (SIGKILL)")
    assert said[0].startswith("demo-api (pid 100) did not answer 3 health checks in a row: killed it (SIGKILL); "
                              "restarting it in 0.25 s")
    api.healthy = False  # a restarted child has a check interval of grace, and its count starts over
    assert [supervisor.hung(api) for _ in range(3)] == [False, False, False]


def test_a_crash_loop_of_hangs_says_the_child_hung() -> None:
    worker = Process("stream-worker")
    supervisor, clock, _ = _supervisor(Stack(worker), RestartPolicy(max_restarts=0))
    with pytest.raises(CrashLoop, match=r"^stream-worker \(pid 100\) did not answer 3 health checks in a row"):
        supervisor.recover(worker, Stopped(clock), "(pid 100) did not answer 3 health checks in a row")


def test_exits_are_described_as_a_person_would() -> None:
    assert describe_exit(1) == "exited with code 1"
    assert describe_exit(-9) == "was killed by SIGKILL"
    assert describe_exit(None) == "is not running"


@pytest.mark.parametrize("bad", [{"max_restarts": -1}, {"window_s": 0}, {"backoff_s": 2, "max_backoff_s": 1},
                                 {"check_every_s": 0}, {"unhealthy_after": 0}])
def test_a_policy_that_cannot_work_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RestartPolicy(**bad)  # type: ignore[arg-type]
