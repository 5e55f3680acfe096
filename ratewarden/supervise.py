"""Keeping ``ratewarden up``'s processes up.

A child that exits is restarted after a backoff that doubles with each recent restart; the
restart waits for the child's health endpoint like the first start did. A child that runs but
has not answered its health check ``unhealthy_after`` times in a row (one check every
``check_every_s``) is hung: it is killed and restarted the same way. Only a crash loop, a child
that would need more than ``max_restarts`` restarts within ``window_s``, gives up: the
:class:`CrashLoop` raised says which child, how it ended and how its log ends.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .local import ManagedProcess

__all__ = ["CrashLoop", "RestartPolicy", "Supervisor", "describe_exit"]


@dataclass(frozen=True)
class RestartPolicy:
    """How often a child may be restarted, and how long to wait before each restart."""

    max_restarts: int = 5
    window_s: float = 300.0
    backoff_s: float = 0.25
    max_backoff_s: float = 30.0
    check_every_s: float = 5.0
    unhealthy_after: int = 3  # failed checks in a row (a slow moment is not a hang)

    def __post_init__(self) -> None:
        if self.max_restarts < 0:
            raise ValueError(f"max_restarts must be 0 or more, not {self.max_restarts}")
        if self.check_every_s <= 0 or self.unhealthy_after < 1:
            raise ValueError(f"check_every_s must be positive and unhealthy_after at least 1 "
                             f"(got {self.check_every_s}, {self.unhealthy_after})")
        if self.window_s <= 0 or self.backoff_s <= 0 or self.max_backoff_s < self.backoff_s:
            raise ValueError("window_s and backoff_s must be positive and max_backoff_s at least backoff_s "
                             f"(got {self.window_s}, {self.backoff_s}, {self.max_backoff_s})")

    def delay(self, recent_restarts: int) -> float:
        """The wait before the next restart of a child restarted ``recent_restarts`` times in the window."""
        return min(self.max_backoff_s, self.backoff_s * 2.0 ** recent_restarts)


class CrashLoop(RuntimeError):
    """A child kept dying: the stack gives up on it."""

    def __init__(self, process: ManagedProcess, restarts: int, window_s: float, how: str | None = None) -> None:
        self.process = process
        super().__init__(
            f"{process.name} {how or describe_exit(process.returncode)} after {restarts} restarts within "
            f"{window_s:g} s: "
            f"a crash loop, so the stack stops. The end of its log ({process.log_path}):\n"
            f"{process.log_tail(20)}")


class Restartable(Protocol):
    """What the supervisor watches: the stack's processes, and how one of them is brought back."""

    processes: list[ManagedProcess]

    def restart(self, process: ManagedProcess) -> None:
        """Start ``process`` again and wait until it is ready (raises if it does not come back)."""
        ...

    def dependents(self, process: ManagedProcess) -> list[ManagedProcess]:
        """The processes to restart after ``process`` is back."""
        ...


def describe_exit(returncode: int | None) -> str:
    """How a child ended, for the log: "exited with code 1", "was killed by SIGKILL"."""
    if returncode is None:
        return "is not running"
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


class Supervisor:
    """Watches ``stack.processes`` and restarts each one that exits, until ``run``'s ``stopped`` is set."""

    def __init__(self, stack: Restartable, policy: RestartPolicy, say: Callable[[str], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stack = stack
        self.policy = policy
        self.say = say
        self.clock = clock
        self._restarts: dict[int, deque[float]] = {}  # id(process) -> when it was restarted
        self._next_check: dict[int, float] = {}  # id(process) -> when its health is checked next
        self._failed_checks: dict[int, int] = {}  # id(process) -> health checks failed in a row

    def run(self, stopped: threading.Event, poll_s: float = 0.25) -> None:
        """Until ``stopped`` is set; raises :class:`CrashLoop` when a child keeps dying."""
        while not stopped.wait(poll_s):
            for process in list(self.stack.processes):
                if stopped.is_set():
                    break
                if not process.running:
                    self.recover(process, stopped)
                elif self.hung(process):
                    pid = process.pid
                    process.kill()
                    self.recover(process, stopped, f"(pid {pid}) did not answer {self.policy.unhealthy_after} "
                                                   "health checks in a row: killed it (SIGKILL)")

    def hung(self, process: ManagedProcess) -> bool:
        """Check the health of running ``process`` if it is due: True after too many failed checks in a row."""
        now = self.clock()
        key = id(process)
        if now < self._next_check.setdefault(key, now + self.policy.check_every_s):
            return False
        self._next_check[key] = now + self.policy.check_every_s
        failed = 0 if process.is_ready() else self._failed_checks.get(key, 0) + 1
        self._failed_checks[key] = failed
        return failed >= self.policy.unhealthy_after

    def recover(self, process: ManagedProcess, stopped: threading.Event, how: str | None = None) -> None:
        """Restart ``process`` after its backoff (unless ``stopped`` is set meanwhile); ``how`` it
        went down, if not by exiting."""
        history = self._restarts.setdefault(id(process), deque())
        while history and history[0] < self.clock() - self.policy.window_s:
            history.popleft()
        if len(history) >= self.policy.max_restarts:
            raise CrashLoop(process, len(history), self.policy.window_s, how)
        delay = self.policy.delay(len(history))
        how = how or f"(pid {process.pid}) {describe_exit(process.returncode)}"
        self.say(f"{process.name} {how}; restarting it in {delay:g} s (restart {len(history) + 1} of at most "
                 f"{self.policy.max_restarts} within {self.policy.window_s:g} s)")
        if stopped.wait(delay):
            return
        history.append(self.clock())
        if self._restart(process):
            for dependent in self.stack.dependents(process):
                self.say(f"restarting {dependent.name} too: it depends on {process.name}")
                self._restart(dependent)

    def _restart(self, process: ManagedProcess) -> bool:
        started = self.clock()
        try:
            self.stack.restart(process)
        except Exception as exc:  # noqa: BLE001 - whatever a restart fails on, the next poll sees it down
            ended = process.returncode
            reason = describe_exit(ended) if ended is not None else (str(exc) or type(exc).__name__).splitlines()[0]
            self.say(f"{process.name} did not come back: {reason} (its log: {process.log_path})")
            return False
        self.say(f"{process.name} is back (pid {process.pid}, ready {self.clock() - started:.1f} s after "
                 "its restart)")
        self._failed_checks[id(process)] = 0
        self._next_check[id(process)] = self.clock() + self.policy.check_every_s
        return True
