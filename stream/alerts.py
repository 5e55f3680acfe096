"""Alert lifecycle: one alert per client and type while an attack lasts (pure, no I/O).

A finding whose dedup key (type and client) fired less than ``cooldown_s`` ago updates
that alert (occurrences, last seen, latest evidence, higher severity) instead of raising
a new one; delivery happens only for new alerts and for severity escalations. An alert quiet
that long is closed and forgotten by the worker's state sweep (see ``stream/state.py``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import MutableMapping
from dataclasses import dataclass, field, replace
from typing import Any

from ratewarden.analytics.client import ClickHouse

from .detectors import Alert

__all__ = ["AlertRecord", "AlertBook", "write_alerts", "ALERT_COLUMNS"]

ALERT_COLUMNS = ["dedup_key", "alert_type", "severity", "client_id", "tier", "window_start", "first_seen",
                 "last_seen", "occurrences", "evidence", "suggested_action", "version"]

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

    tier: str = ""

    @property
    def dedup_key(self) -> str:
        return self.alert.dedup_key

    def payload(self) -> dict[str, Any]:
        """The alert as published on the alerts topic and sent to webhooks."""
        a = self.alert
        return {"dedup_key": a.dedup_key, "alert_type": a.alert_type, "severity": a.severity,
                "client_id": a.client_id, "tier": self.tier, "window_start": a.window_start,
                "first_seen": self.first_seen, "last_seen": self.last_seen, "occurrences": self.occurrences,
                "version": self.version, "evidence": a.evidence, "suggested_action": a.suggested_action}

    def row(self) -> list[object]:
        utc, a = dt.UTC, self.alert
        return [a.dedup_key, a.alert_type, a.severity, a.client_id, self.tier,
                dt.datetime.fromtimestamp(a.window_start, utc), dt.datetime.fromtimestamp(self.first_seen, utc),
                dt.datetime.fromtimestamp(self.last_seen, utc), self.occurrences,
                json.dumps(a.evidence, sort_keys=True), a.suggested_action, self.version]


class AlertBook:
    """Open alerts by dedup key, with a per-key cooldown. ``open`` may be any mapping that
    stores records (a dict, or a Faust table through a codec so a restarted worker keeps them)."""

    def __init__(self, cooldown_s: float = 900.0, history: int = 5,
                 open: MutableMapping[str, AlertRecord] | None = None) -> None:
        self.cooldown_s = cooldown_s
        self.history = history
        self.open: MutableMapping[str, AlertRecord] = {} if open is None else open

    def record(self, alert: Alert, now: float, tier: str = "") -> tuple[AlertRecord, bool]:
        """File ``alert`` seen at ``now``; returns (its record, whether to deliver it)."""
        current = self.open.get(alert.dedup_key)
        if current is None or now - current.last_seen >= self.cooldown_s:
            record = AlertRecord(alert, now, now, evidence_history=[alert.evidence], tier=tier)
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
        self.open[alert.dedup_key] = current  # write back: the mapping may store a copy
        return current, escalated


def write_alerts(client: ClickHouse, records: list[AlertRecord], db: str = "ratewarden") -> None:
    """Insert alert versions (``alerts`` keeps the highest version per dedup key)."""
    if records:
        client.insert(f"{db}.alerts", [r.row() for r in records], column_names=ALERT_COLUMNS)
