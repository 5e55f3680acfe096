"""The ClickHouse schema on embedded chDB: idempotent migrations, and deduplicated inserts that
keep the rollups exact."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

from ratewarden.analytics.migrations import applied_versions, dedup_insert_settings, migrate


def test_migrations_apply_once_and_are_recorded(clickhouse) -> None:
    first = migrate(clickhouse, db="rw_schema")
    assert [m.version for m in first] == [1, 2, 3, 4, 5]
    assert migrate(clickhouse, db="rw_schema") == []
    assert applied_versions(clickhouse, "rw_schema") == {1, 2, 3, 4, 5}
    tables = {row[0] for row in clickhouse.query("SHOW TABLES FROM rw_schema").result_rows}
    assert {"usage_minute", "usage_hour", "usage_day", "alerts", "penalties", "sink_offsets",
            "schema_migrations"} <= tables


def test_a_repeated_insert_is_dropped_before_the_rollups(clickhouse) -> None:
    migrate(clickhouse, db="rw_dedup")
    window = dt.datetime(2031, 1, 2, 3, 4, tzinfo=dt.UTC)
    rows = [[window, "k:key_a", "paid", "GET /v1/items", "GET", "2xx", "allowed", 40, 40, 80.0, 9.0],
            [window, "k:key_a", "paid", "GET /v1/items", "GET", "4xx", "denied", 2, 2, 1.0, 0.5]]
    columns = ["window_start", "client_id", "tier", "route", "method", "status_class", "decision",
               "requests", "cost", "latency_sum_ms", "latency_max_ms"]
    token = "2031-01-02T03:04|partition-0|batch-7"
    for _ in range(3):  # a worker that wrote, crashed before committing, and wrote again (twice)
        clickhouse.insert("rw_dedup.usage_minute", rows, column_names=columns,
                          settings=dedup_insert_settings(token))
    assert clickhouse.query("SELECT sum(requests) FROM rw_dedup.usage_minute").result_rows == [(42,)]
    assert clickhouse.query("SELECT sum(requests) FROM rw_dedup.usage_hour").result_rows == [(42,)]
    assert clickhouse.query(
        "SELECT decision, sum(requests) FROM rw_dedup.usage_day GROUP BY decision ORDER BY decision"
    ).result_rows == [("allowed", 40), ("denied", 2)]
    # another batch (another token) counts
    clickhouse.insert("rw_dedup.usage_minute", rows[:1], column_names=columns,
                      settings=dedup_insert_settings(token + "-next"))
    assert clickhouse.query("SELECT sum(requests) FROM rw_dedup.usage_hour").result_rows == [(82,)]


def test_db_migrate_command(tmp_path: Path) -> None:
    # in a child process: chDB allows one data directory per process
    url = f"chdb://{tmp_path / 'cli'}"
    env = {"RATEWARDEN_CLICKHOUSE_URL": url, "PATH": "/usr/bin:/bin"}
    run = lambda: subprocess.run([sys.executable, "-m", "ratewarden.cli", "db", "migrate"],  # noqa: E731
                                 capture_output=True, text=True, env=env, cwd=tmp_path)
    first, second = run(), run()
    assert first.returncode == 0, first.stderr
    assert "applied 5 migrations" in first.stdout
    assert second.returncode == 0 and "up to date" in second.stdout


def test_sink_totals_are_exact_with_duplicates_redelivery_and_a_restarted_worker(clickhouse) -> None:
    from ratewarden.stream.simulate import events, scenario
    from ratewarden.stream.sink import UsageSink, written_offsets

    migrate(clickhouse, db="rw_sink")
    clients = scenario(legit=30, per_abuse=1)
    simulated = list(events(clients, 3, 1_900_000_020_000_000))
    # (partition, offset, event); after 3000 events a publisher replays a spill: 500 ids again
    stream = simulated[:3000] + simulated[:500] + simulated[3000:]
    log = [(i % 2, i, e) for i, e in enumerate(stream)]
    half = len(log) // 2

    first = UsageSink(clickhouse, "requests", database="rw_sink")
    first.assign([0, 1])
    for partition, offset, event in log[:half]:
        first.add(partition, offset, event)
    first.flush()
    for partition, offset, event in log[half:half + 1000]:
        first.add(partition, offset, event)  # folded, then the worker dies before writing them
    expected_written = {p: max(o for q, o, _ in log[:half] if q == p) for p in (0, 1)}
    assert written_offsets(clickhouse, "requests", "rw_sink") == expected_written

    second = UsageSink(clickhouse, "requests", database="rw_sink")  # the restarted worker
    second.assign([0, 1])
    for partition, offset, event in log[half - 5000:]:  # Kafka redelivers from an older commit
        second.add(partition, offset, event)
    assert second.flush() > 0
    assert second.flush() == 0  # nothing pending

    total = clickhouse.query("SELECT sum(requests), sum(cost) FROM rw_sink.usage_minute").result_rows[0]
    assert total == (len(simulated), sum(e.cost for e in simulated))
    denied = sum(1 for e in simulated if not e.allowed)
    assert clickhouse.query("SELECT sum(requests) FROM rw_sink.usage_day WHERE decision = 'denied'"
                            ).result_rows == [(denied,)]
    per_client = dict(clickhouse.query("SELECT client_id, sum(requests) FROM rw_sink.usage_hour GROUP BY client_id"
                                       ).result_rows)
    expected: dict[str, int] = {}
    for e in simulated:
        expected[e.client_id] = expected.get(e.client_id, 0) + 1
    assert per_client == expected


class Flaky:
    """The real chDB client behind a switch: inserts fail (before or after they land) while ``down``."""

    def __init__(self, client: object) -> None:
        self.client, self.down, self.land_anyway = client, False, False

    def insert(self, *args: object, **kwargs: object) -> object:
        if self.down:
            if self.land_anyway:  # the insert lands but the answer is lost (a timeout)
                self.client.insert(*args, **kwargs)
            raise ConnectionError("ClickHouse is away")
        return self.client.insert(*args, **kwargs)

    def __getattr__(self, name: str) -> object:
        return getattr(self.client, name)


def test_the_sink_keeps_and_retries_blocks_while_clickhouse_is_away(clickhouse) -> None:
    import msgspec
    import pytest

    from ratewarden.stream.simulate import events, scenario
    from ratewarden.stream.sink import UsageSink

    migrate(clickhouse, db="rw_flaky")
    simulated = list(events(scenario(legit=20, per_abuse=1), 2, 1_900_000_020_000_000))
    flaky = Flaky(clickhouse)
    sink = UsageSink(flaky, "requests", database="rw_flaky")
    sink.assign([0, 1])
    chunks = [simulated[i:i + 700] for i in range(0, len(simulated), 700)]
    offset = 0
    for n, chunk in enumerate(chunks):
        for event in chunk:
            sink.add(offset % 2, offset, event)
            offset += 1
        flaky.down, flaky.land_anyway = n % 3 != 0, n % 2 == 0  # away two flushes in three, sometimes landing
        try:
            sink.flush()
        except ConnectionError:
            assert sink.first_unwritten(0) is not None or sink.first_unwritten(1) is not None
    flaky.down = False
    sink.flush()
    sink.flush()
    assert sink.first_unwritten(0) is None and sink.first_unwritten(1) is None
    total = clickhouse.query("SELECT sum(requests) FROM rw_flaky.usage_minute").result_rows[0][0]
    assert total == len(simulated)
    assert clickhouse.query("SELECT sum(requests) FROM rw_flaky.usage_day").result_rows[0][0] == len(simulated)
    flaky.down = True
    sink.add(0, offset, msgspec.structs.replace(simulated[0], event_id="one-more"))
    with pytest.raises(ConnectionError):  # the caller hears of the outage; the row waits
        sink.flush()
    assert sink.first_unwritten(0) == offset
