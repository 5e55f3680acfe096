"""Stage two of the worker: closed window summaries in, alert records out (no I/O).

State lives in mappings handed in by the caller: plain dicts in tests, Faust tables (with
changelogs) in the worker, so a restarted worker keeps its baselines, its open alerts and
its memory of which windows it has already examined.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from dataclasses import replace
from typing import Any

import msgspec

from .alerts import AlertBook, AlertRecord
from .detectors import Alert, Detector
from .settings import StreamSettings
from .windows import ClientSummary, EndpointSummary, IpSummary, Summary, summary_key

__all__ = ["Detection", "RecordCodec", "Screen"]


class RecordCodec(MutableMapping[str, AlertRecord]):
    """Alert records stored as JSON-able dicts in another mapping (a Faust table)."""

    def __init__(self, store: MutableMapping[str, Any]) -> None:
        self.store = store

    def __getitem__(self, key: str) -> AlertRecord:
        return msgspec.convert(self.store[key], AlertRecord)

    def __setitem__(self, key: str, record: AlertRecord) -> None:
        self.store[key] = msgspec.to_builtins(record)

    def __delitem__(self, key: str) -> None:
        del self.store[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.store)

    def __len__(self) -> int:
        return len(self.store)


class Screen:
    """Stage one's filter: a summary goes to the detectors if it is a full usage window (the
    spike baselines need every one) or if a stateless detector would flag it. Most short
    hopping windows are neither, and never leave the process."""

    def __init__(self, settings: StreamSettings) -> None:
        d = settings.detectors
        self.window_s = settings.window_s
        self.client_checks = [d.retry_storm.check, d.credential_stuffing.check, d.scraping.check, d.key_sharing.check]
        self.endpoint_checks = [d.credential_stuffing_distributed.check]
        self.ip_checks = [d.key_cycling.check]

    def wanted(self, summary: Summary) -> bool:
        if isinstance(summary, EndpointSummary):
            return any(check(summary) for check in self.endpoint_checks)
        if isinstance(summary, IpSummary):
            return any(check(summary) for check in self.ip_checks)
        return summary.window_s == self.window_s or any(check(summary) for check in self.client_checks)


class Detection:
    """Runs every detector over each window summary, once per window."""

    def __init__(self, settings: StreamSettings, marks: MutableMapping[str, dict[str, float]] | None = None,
                 baselines: MutableMapping[str, Any] | None = None,
                 open_alerts: MutableMapping[str, Any] | None = None) -> None:
        detectors = settings.detectors
        self.marks = {} if marks is None else marks
        spike = replace(detectors.traffic_spike, baselines={} if baselines is None else baselines,
                        window_s=settings.window_s)
        self.client_detectors: list[Detector[ClientSummary]] = [
            detectors.retry_storm, detectors.credential_stuffing, detectors.scraping, detectors.key_sharing, spike]
        self.endpoint_detectors: list[Detector[EndpointSummary]] = [detectors.credential_stuffing_distributed]
        self.ip_detectors: list[Detector[IpSummary]] = [detectors.key_cycling]
        self.book = AlertBook(settings.alert_cooldown_s,
                              open=RecordCodec({} if open_alerts is None else open_alerts))

    def _first_time(self, key: str, summary: Summary) -> bool:
        """True unless this window (or a later one of the same length) was examined already."""
        marks = dict(self.marks.get(key) or {})
        length = str(summary.window_s)
        if marks.get(length, float("-inf")) >= summary.window_start:
            return False
        marks[length] = summary.window_start
        self.marks[key] = marks
        return True

    def examine(self, summary: Summary) -> list[tuple[AlertRecord, bool]]:
        """Alerts this window raises or updates, each with whether to deliver it (new or escalated)."""
        # lazy: each check runs in the loop below, once the window is known to be new
        alerts: Iterator[Alert | None]
        if isinstance(summary, ClientSummary):
            tier, alerts = summary.tier, (detector.check(summary) for detector in self.client_detectors)
        elif isinstance(summary, EndpointSummary):
            tier, alerts = "", (detector.check(summary) for detector in self.endpoint_detectors)
        elif isinstance(summary, IpSummary):
            tier, alerts = "", (detector.check(summary) for detector in self.ip_detectors)
        else:
            raise TypeError(f"not a window summary: {type(summary).__name__}")
        key = summary_key(summary)
        if not self._first_time(key, summary):
            return []
        now = summary.window_start + summary.window_s  # event time: the window's end
        found = []
        for alert in alerts:
            if alert is not None:
                found.append(self.book.record(alert, now, tier))
        return found
