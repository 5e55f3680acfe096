"""Alert cooldown: a sustained attack is one alert that updates, not a flood; a quiet alert closes
and is forgotten."""

from __future__ import annotations

from ratewarden.stream.alerts import AlertBook
from ratewarden.stream.detection import RecordCodec
from ratewarden.stream.detectors import Alert
from ratewarden.stream.state import ExpiringState


def finding(minute: int, severity: str = "warning", client: str = "ip:203.0.113.7", kind: str = "scraping") -> Alert:
    return Alert(kind, severity, client, minute * 60.0, {"minute": minute}, "throttle")


def test_sustained_attack_is_one_alert_that_updates() -> None:
    book = AlertBook(cooldown_s=600)
    deliveries = [book.record(finding(m), now=m * 60.0)[1] for m in range(10)]
    assert deliveries == [True] + [False] * 9
    record = book.open["scraping:ip:203.0.113.7"]
    assert (record.occurrences, record.version, record.first_seen, record.last_seen) == (10, 10, 0.0, 540.0)
    assert [e["minute"] for e in record.evidence_history] == [5, 6, 7, 8, 9]


def test_escalation_is_delivered_and_other_clients_and_types_are_separate() -> None:
    book = AlertBook(cooldown_s=600)
    assert book.record(finding(0), 0)[1]
    assert book.record(finding(1, severity="critical"), 60)[1]  # escalation: deliver again
    assert not book.record(finding(2, severity="warning"), 120)[1]
    assert book.open["scraping:ip:203.0.113.7"].alert.severity == "critical"
    assert book.record(finding(2, client="ip:203.0.113.8"), 120)[1]
    assert book.record(finding(2, kind="key_sharing"), 120)[1]
    assert len(book.open) == 3


def test_quiet_alerts_close_and_are_forgotten_and_a_new_attack_alerts_again() -> None:
    clock = [1000.0]
    table: dict[str, object] = {}
    book = AlertBook(cooldown_s=300, open=RecordCodec(ExpiringState(table, 300, clock=lambda: clock[0])))
    book.record(finding(0), 0)
    state = ExpiringState(table, 300)
    assert state.sweep(partition=0, now=1200) == {}
    assert state.sweep(partition=1, now=1300) == {}  # another partition's sweep leaves it alone
    closed = state.sweep(partition=0, now=1300)
    assert list(closed) == ["scraping:ip:203.0.113.7"] and table == {}
    assert book.record(finding(10), 600)[1]
