"""Alert cooldown: a sustained attack is one alert that updates, not a flood."""

from __future__ import annotations

from ratewarden.stream.alerts import AlertBook
from ratewarden.stream.detectors import Alert


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


def test_quiet_alerts_close_and_a_new_attack_alerts_again() -> None:
    book = AlertBook(cooldown_s=300)
    book.record(finding(0), 0)
    assert book.expire(now=200) == []
    closed = book.expire(now=300)
    assert [r.dedup_key for r in closed] == ["scraping:ip:203.0.113.7"] and book.open == {}
    assert book.record(finding(10), 600)[1]
