"""Stage two of the worker: closed window summaries in, alert records out (no I/O).

State lives in mappings handed in by the caller: plain dicts in tests, Faust tables (with
changelogs) in the worker, so a restarted worker keeps its detectors' state, its open alerts
and its memory of which windows it has already examined. Each is an
:class:`~ratewarden.stream.state.ExpiringState`, so entries untouched for a while go.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

import msgspec

from .alerts import AlertBook, AlertRecord
from .detectors import Detector, registered
from .settings import StreamSettings
from .state import ExpiringState, StoredMapping
from .windows import ClientSummary, Summary, summary_key

__all__ = ["Detection", "RecordCodec", "Screen", "state_tables"]


class RecordCodec(StoredMapping[AlertRecord]):
    """Alert records stored as JSON-able dicts in another mapping (a Faust table)."""

    def __getitem__(self, key: str) -> AlertRecord:
        return msgspec.convert(self.store[key], AlertRecord)

    def __setitem__(self, key: str, record: AlertRecord) -> None:
        self.store[key] = msgspec.to_builtins(record)


def state_tables(settings: StreamSettings) -> list[str]:
    """Names of the tables the detection stage keeps: windows examined, open alerts, and one per
    stateful detector (``<alert type>-state``)."""
    stateful = [f"{d.alert_type}-state" for d in registered(settings.detectors) if d.stateful]
    return ["examined", "open-alerts", *stateful]


class Screen:
    """Stage one's filter: a summary goes to the detectors if it is a full usage window (stateful
    detectors need every one) or if a stateless detector would flag it. Most short hopping
    windows are neither, and never leave the process."""

    def __init__(self, settings: StreamSettings) -> None:
        self.window_s = settings.window_s
        self.stateless = [d for d in registered(settings.detectors) if not d.stateful]

    def wanted(self, summary: Summary) -> bool:
        """Whether ``summary`` goes to the detectors."""
        if isinstance(summary, ClientSummary) and summary.window_s == self.window_s:
            return True
        return any(isinstance(summary, d.summary_type) and d.check(summary, {}) for d in self.stateless)


class Detection:
    """Runs every registered detector over each window summary, once per window.

    ``tables`` holds a mapping per name of :func:`state_tables` (missing ones start as dicts);
    ``partition`` names the partition being handled, for the state's sweeps."""

    def __init__(self, settings: StreamSettings, tables: Mapping[str, MutableMapping[str, Any]] | None = None,
                 partition: Callable[[], int] = lambda: 0) -> None:
        tables = tables or {}

        def state(name: str, ttl_s: float) -> ExpiringState:
            return ExpiringState(tables.get(name, {}), ttl_s, partition)

        self.window_s = settings.window_s
        self.detectors = registered(settings.detectors)
        self.states: dict[str, ExpiringState] = {
            name: state(name, settings.alert_cooldown_s if name == "open-alerts" else settings.state_ttl_s)
            for name in state_tables(settings)}
        self.marks = self.states["examined"]
        self.book = AlertBook(settings.alert_cooldown_s, open=RecordCodec(self.states["open-alerts"]))

    def _first_time(self, key: str, summary: Summary) -> bool:
        """True unless this window (or a later one of the same length) was examined already."""
        marks = dict(self.marks.get(key) or {})
        length = str(summary.window_s)
        if marks.get(length, float("-inf")) >= summary.window_start:
            return False
        marks[length] = summary.window_start
        self.marks[key] = marks
        return True

    def _state_of(self, detector: Detector[Any]) -> MutableMapping[str, Any]:
        return self.states[f"{detector.alert_type}-state"] if detector.stateful else {}

    def examine(self, summary: Summary) -> list[tuple[AlertRecord, bool]]:
        """Alerts this window raises or updates, each with whether to deliver it (new or escalated)."""
        if not isinstance(summary, Summary):
            raise TypeError(f"not a window summary: {type(summary).__name__}")
        if not self._first_time(summary_key(summary), summary):
            return []
        full = summary.window_s == self.window_s
        tier = summary.tier if isinstance(summary, ClientSummary) else ""
        now = summary.window_start + summary.window_s  # event time: the window's end
        found = []
        for detector in self.detectors:
            if isinstance(summary, detector.summary_type) and (full or not detector.stateful):
                alert = detector.check(summary, self._state_of(detector))
                if alert is not None:
                    found.append(self.book.record(alert, now, tier))
        return found

    def sweep(self, partition: int, now: float) -> list[AlertRecord]:
        """Drop the state of ``partition`` untouched for its lifetime; returns the alerts that closed."""
        closed: list[AlertRecord] = []
        for name, state in self.states.items():
            stale = state.sweep(partition, now)
            if name == "open-alerts":
                closed = [msgspec.convert(value, AlertRecord) for value in stale.values()]
        return closed

    def sizes(self) -> dict[str, int]:
        """Entries per table (for metrics and the soak benchmark)."""
        return {name: len(state) for name, state in self.states.items()}
