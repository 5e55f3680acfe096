"""How a reconnect loop logs an outage: once when it starts, rarely while it lasts, once when it ends.

A loop that retries twice a second must not log twice a second: an operator needs the first
failure (which server, which setting names it, why), a reminder now and then that it still
fails, and the recovery with how long it took.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .logs import EventLogger, redact

__all__ = ["OutageLog"]


def _reason(error: BaseException | str) -> str:
    """``error`` for a log line: at most 300 characters, URLs redacted. Built only for lines logged:
    every request in flight when Redis goes away reports the failure."""
    return redact((f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else error)[:300])


class OutageLog:
    """The logs of one reconnect loop talking to one server, and the loop's retry delays.

    ``failed(exc)`` on each failed attempt: the first logs ``<what>_unavailable`` (warning), later
    ones ``<what>_still_unavailable`` only after ``first_repeat_s``, then twice as long each time up
    to ``max_repeat_s``. ``succeeded()`` after a good attempt logs ``<what>_recovered`` (info) if it
    was down. ``retry_delay()`` is the pause before the next attempt: ``min_retry_s``, doubling
    up to ``max_retry_s`` while the outage lasts. ``context`` (e.g. ``server``, ``setting``) goes on
    every line; give no secrets (URLs in it and in error messages are redacted anyway).
    """

    __slots__ = ("_log", "_what", "_clock", "_context", "_first_repeat_s", "_max_repeat_s", "_min_retry_s",
                 "_max_retry_s", "_since", "_next_report", "_repeat_s", "_failures", "_retry_s")

    def __init__(self, log: EventLogger, what: str, *, clock: Callable[[], float] = time.monotonic,
                 first_repeat_s: float = 10.0, max_repeat_s: float = 300.0, min_retry_s: float = 0.5,
                 max_retry_s: float = 2.0, **context: Any) -> None:
        self._log, self._what, self._clock = log, what, clock
        self._context = {key: redact(str(value)) for key, value in context.items()}
        self._first_repeat_s, self._max_repeat_s = first_repeat_s, max_repeat_s
        self._min_retry_s, self._max_retry_s = min_retry_s, max_retry_s
        self._since: float | None = None  # when the outage began (None: up)
        self._next_report = self._repeat_s = 0.0
        self._failures = 0
        self._retry_s = min_retry_s

    @property
    def down(self) -> bool:
        """Whether an outage is going on (a failure not yet followed by a success)."""
        return self._since is not None

    def failed(self, error: BaseException | str) -> None:
        """An attempt failed with ``error`` (an exception, or what went wrong in words)."""
        now = self._clock()
        self._failures += 1
        if self._since is None:
            self._since, self._failures = now, 1
            self._repeat_s = self._first_repeat_s
            self._next_report = now + self._repeat_s
            self._log.warning(f"{self._what}_unavailable", **self._context, error=_reason(error))
        elif now >= self._next_report:
            self._repeat_s = min(2 * self._repeat_s, self._max_repeat_s)
            self._next_report = now + self._repeat_s
            self._log.warning(f"{self._what}_still_unavailable", **self._context, error=_reason(error),
                              down_s=round(now - self._since, 1), attempts=self._failures)

    def succeeded(self) -> None:
        """An attempt worked: ends the outage, if there was one."""
        if self._since is None:
            return
        self._log.info(f"{self._what}_recovered", **self._context, down_s=round(self._clock() - self._since, 1),
                       attempts=self._failures)
        self._since = None
        self._retry_s = self._min_retry_s

    def retry_delay(self) -> float:
        """Seconds to wait before the next attempt (grows while the outage lasts)."""
        delay = self._retry_s
        self._retry_s = min(2 * self._retry_s, self._max_retry_s)
        return delay
