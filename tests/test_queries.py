"""The analytics queries on chDB, seeded through the real sink and alert/penalty writers, each
checked against totals computed independently from the seeded events."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import defaultdict
from typing import Any

import msgspec
import pytest

from ratewarden.analytics import queries
from ratewarden.analytics.migrations import migrate
from ratewarden.stream.alerts import AlertBook, write_alerts
from ratewarden.stream.detectors import Alert
from ratewarden.stream.penalties import Penalty, write_penalties
from ratewarden.stream.simulate import events, scenario
from ratewarden.stream.sink import UsageSink

DB = "rw_queries"
UTC = dt.UTC
# 20 minutes across last midnight (per-minute rows are kept 30 days: seed recent data)
START = dt.datetime.combine(dt.datetime.now(UTC).date() - dt.timedelta(days=1), dt.time(23, 50), UTC)
END = START + dt.timedelta(minutes=20)


@pytest.fixture(scope="module")
def seeded(clickhouse: Any) -> list[Any]:
    migrate(clickhouse, db=DB)
    simulated = [shadowed(i, e) for i, e in
                 enumerate(events(scenario(legit=40, per_abuse=2), 20, int(START.timestamp()) * 1_000_000))]
    sink = UsageSink(clickhouse, "requests", database=DB)
    sink.assign([0, 1, 2])
    for offset, event in enumerate(simulated):
        sink.add(offset % 3, offset, event)
        if offset % 5000 == 0:
            sink.flush()
    sink.flush()
    book = AlertBook(cooldown_s=600)
    records = [book.record(Alert("scraping", "warning", "ip:203.0.20.7", START.timestamp(), {"n": i}, "throttle"),
                           START.timestamp() + 60 * i, tier="free")[0] for i in range(3)]
    records.append(book.record(Alert("retry_storm", "warning", "k:retry_storm0", START.timestamp(), {"n": 1}, "x"),
                               START.timestamp() + 30, tier="free")[0])
    write_alerts(clickhouse, records, DB)
    write_penalties(clickhouse, [Penalty("p1", "ip:203.0.20.7", "throttle", "free", "scraping", "r",
                                         START.timestamp() + 5, START.timestamp() + 905)], DB)
    return simulated


def shadowed(i: int, event: Any) -> Any:
    """Some admitted events marked as would-be-denied by one of two shadow rules."""
    if not event.allowed or i % 7:
        return event
    rule = "tight-burst" if event.client_id.startswith("k:retry") else "strict-per-ip"
    return msgspec.structs.replace(event, shadow_denied=rule)


def test_shadow_denials_per_rule_with_their_clients(clickhouse: Any, seeded: list[Any]) -> None:
    rows = queries.shadow_denials(clickhouse, START, END, top=3, db=DB)
    marked = [e for e in seeded if e.shadow_denied]
    expected = _per(marked, lambda e: e.shadow_denied)
    assert {r["rule"]: r["would_deny"] for r in rows} == expected and len(expected) == 2
    assert [r["rule"] for r in rows] == sorted(expected, key=lambda rule: -expected[rule])
    for row in rows:
        mine = _per([e for e in marked if e.shadow_denied == row["rule"]], lambda e: e.client_id)
        assert row["clients"] == len(mine)
        assert [c["would_deny"] for c in row["top_clients"]] == sorted(mine.values(), reverse=True)[:3]
        assert all(mine[c["client_id"]] == c["would_deny"] for c in row["top_clients"])
        assert row["tiers"] == sorted({e.tier for e in marked if e.shadow_denied == row["rule"]})


def _per(simulated: list[Any], key: Any, weight: Any = lambda e: 1) -> dict[Any, int]:
    out: dict[Any, int] = defaultdict(int)
    for event in simulated:
        out[key(event)] += weight(event)
    return dict(out)


def test_usage_over_time_per_minute_hour_and_day(clickhouse: Any, seeded: list[Any]) -> None:
    minute = lambda e: dt.datetime.fromtimestamp(e.decided_at_us // 60_000_000 * 60, UTC)  # noqa: E731
    rows = queries.usage_over_time(clickhouse, START, END, "minute", db=DB)
    assert {r["t"]: r["requests"] for r in rows} == _per(seeded, minute)
    assert {r["t"]: r["denied"] for r in rows if r["denied"]} == _per([e for e in seeded if not e.allowed], minute)
    client = "k:legit0001"
    mine = [e for e in seeded if e.client_id == client]
    rows = queries.usage_over_time(clickhouse, START, END, "minute", client_id=client, db=DB)
    assert sum(r["requests"] for r in rows) == len(mine) and sum(r["cost"] for r in rows) == sum(e.cost for e in mine)
    days = queries.usage_over_time(clickhouse, START - dt.timedelta(days=1), END + dt.timedelta(days=1), "day", db=DB)
    by_day = _per(seeded, lambda e: dt.datetime.fromtimestamp(e.decided_at_us / 1e6, UTC).date())
    assert {r["t"].date(): r["requests"] for r in days} == by_day and len(by_day) == 2
    hours = queries.usage_over_time(clickhouse, START - dt.timedelta(hours=1), END, "hour", db=DB)
    assert sum(r["requests"] for r in hours) == len(seeded)


def test_top_clients_by_requests_and_by_denials(clickhouse: Any, seeded: list[Any]) -> None:
    requests = _per(seeded, lambda e: e.client_id)
    denied = _per([e for e in seeded if not e.allowed], lambda e: e.client_id)
    top = queries.top_clients(clickhouse, START, END, "requests", limit=5, db=DB)
    most_requests = sorted(requests.items(), key=lambda kv: (-kv[1], kv[0]))
    assert [(r["client_id"], r["requests"]) for r in top] == most_requests[:5]
    worst = queries.top_clients(clickhouse, START, END, "denied", limit=2, db=DB)
    most_denied = sorted(denied.items(), key=lambda kv: (-kv[1], kv[0]))
    assert [(r["client_id"], r["denied"]) for r in worst] == most_denied[:2]


def test_endpoint_usage(clickhouse: Any, seeded: list[Any]) -> None:
    rows = {r["route"]: r for r in queries.endpoint_usage(clickhouse, START, END, db=DB)}
    assert {route: r["requests"] for route, r in rows.items()} == _per(seeded, lambda e: e.route)
    login = [e for e in seeded if e.route == "POST /v1/login"]
    assert rows["POST /v1/login"]["max_latency_ms"] == max(e.latency_ms for e in login)
    assert rows["POST /v1/login"]["mean_latency_ms"] == pytest.approx(sum(e.latency_ms for e in login) / len(login),
                                                                      abs=0.001)


def test_quota_consumption_today_and_this_month(clickhouse: Any, seeded: list[Any]) -> None:
    client = "k:legit0002"
    admitted = [e for e in seeded if e.client_id == client and e.allowed]
    second_day = END.date()
    on_day = sum(e.cost for e in admitted if dt.datetime.fromtimestamp(e.decided_at_us / 1e6, UTC).date() == second_day)
    used = queries.quota_consumption(clickhouse, client, today=second_day, db=DB)
    in_month = sum(e.cost for e in admitted
                   if dt.datetime.fromtimestamp(e.decided_at_us / 1e6, UTC).date() >= second_day.replace(day=1))
    assert used == {"client_id": client, "day": second_day.isoformat(),
                    "month_start": second_day.replace(day=1).isoformat(), "day_used": on_day, "month_used": in_month}
    anchored = queries.quota_consumption(clickhouse, client, today=second_day, anchor_day=second_day.day, db=DB)
    assert anchored["month_start"] == second_day.isoformat() and anchored["month_used"] == on_day


@pytest.mark.parametrize("day, anchor, expected", [
    (dt.date(2026, 2, 27), 31, dt.date(2026, 1, 31)), (dt.date(2026, 2, 28), 31, dt.date(2026, 2, 28)),
    (dt.date(2028, 2, 29), 31, dt.date(2028, 2, 29)), (dt.date(2028, 2, 28), 31, dt.date(2028, 1, 31)),
    (dt.date(2026, 1, 5), 15, dt.date(2025, 12, 15)), (dt.date(2026, 5, 9), None, dt.date(2026, 5, 1)),
])
def test_quota_month_start_with_billing_anchors(day: dt.date, anchor: int | None, expected: dt.date) -> None:
    assert queries.month_start(day, anchor) == expected


def test_alert_and_penalty_history(clickhouse: Any, seeded: list[Any]) -> None:
    alerts = queries.alert_history(clickhouse, START, END, db=DB)
    assert [(a["dedup_key"], a["occurrences"], a["version"]) for a in alerts] == [
        ("scraping:ip:203.0.20.7", 3, 3), ("retry_storm:k:retry_storm0", 1, 1)]
    assert alerts[0]["evidence"] == {"n": 2} and alerts[0]["tier"] == "free"
    assert len(queries.alert_history(clickhouse, START, END, client_id="k:retry_storm0", db=DB)) == 1
    penalties = queries.penalty_history(clickhouse, START, END, db=DB)
    assert [(p["client_id"], p["action"], p["detector"]) for p in penalties] == [
        ("ip:203.0.20.7", "throttle", "scraping")]


def test_usage_csv_for_billing(clickhouse: Any, seeded: list[Any]) -> None:
    text = queries.usage_csv(clickhouse, START.date(), END.date() + dt.timedelta(days=1), db=DB)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == queries.CSV_COLUMNS
    day_of = lambda e: dt.datetime.fromtimestamp(e.decided_at_us / 1e6, UTC).date().isoformat()  # noqa: E731
    billable = _per([e for e in seeded if e.allowed], lambda e: (day_of(e), e.client_id), lambda e: e.cost)
    assert {(r["day"], r["client_id"]): int(r["billable_cost"]) for r in rows if int(r["billable_cost"])} == billable
    assert sum(int(r["requests"]) for r in rows) == len(seeded)
