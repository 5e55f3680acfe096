"""Alert lifecycle: one alert per client and type while an attack lasts (pure, no I/O).

A finding whose dedup key (type and client) fired less than ``cooldown_s`` ago updates
that alert (occurrences, last seen, latest evidence, higher severity) instead of raising
a new one; delivery happens only for new alerts and for severity escalations.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .detectors import Alert

__all__ = ["AlertRecord", "AlertBook"]

_SEVERITY = {"info": 0, "warning": 1, "critical": 2}


@dataclass
class AlertRecord:
    """An alert as stored and delivered: the latest finding plus its history."""

    alert: Alert
    first_seen: float
    last_seen: float
    occurrences: int = 1
    version: int = 1
    evidence_history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def dedup_key(self) -> str:
        return self.alert.dedup_key


class AlertBook:
    """Open alerts by dedup key, with a per-key cooldown."""

    def __init__(self, cooldown_s: float = 900.0, history: int = 5) -> None:
        self.cooldown_s = cooldown_s
        self.history = history
        self.open: dict[str, AlertRecord] = {}

    def record(self, alert: Alert, now: float) -> tuple[AlertRecord, bool]:
        """File ``alert`` seen at ``now``; returns (its record, whether to deliver it)."""
        current = self.open.get(alert.dedup_key)
        if current is None or now - current.last_seen >= self.cooldown_s:
            record = AlertRecord(alert, now, now, evidence_history=[alert.evidence])
            self.open[alert.dedup_key] = record
            return record, True
        escalated = _SEVERITY[alert.severity] > _SEVERITY[current.alert.severity]
        if escalated or alert.window_start >= current.alert.window_start:
            # the latest finding, at the highest severity seen
            severity = max(alert.severity, current.alert.severity, key=_SEVERITY.__getitem__)
            current.alert = replace(alert, severity=severity)
        current.last_seen = max(current.last_seen, now)
        current.occurrences += 1
        current.version += 1
        current.evidence_history = (current.evidence_history + [alert.evidence])[-self.history:]
        return current, escalated

    def expire(self, now: float) -> list[AlertRecord]:
        """Close and return alerts quiet for a full cooldown."""
        closed = [r for r in self.open.values() if now - r.last_seen >= self.cooldown_s]
        for record in closed:
            del self.open[record.dedup_key]
        return closed
