"""The ClickHouse schema on embedded chDB: idempotent migrations, and deduplicated inserts that
keep the rollups exact."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from analytics.client import connect
from analytics.migrations import applied_versions, dedup_insert_settings, migrate



@pytest.fixture(scope="module")
def clickhouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    # chDB: one engine and one data directory per process, so one directory for the module
    client = connect(f"chdb://{tmp_path_factory.mktemp('chdb')}")
    yield client


def test_migrations_apply_once_and_are_recorded(clickhouse) -> None:
    first = migrate(clickhouse, db="rw_schema")
    assert [m.version for m in first] == [1, 2]
    assert migrate(clickhouse, db="rw_schema") == []
    assert applied_versions(clickhouse, "rw_schema") == {1, 2}
    tables = {row[0] for row in clickhouse.query("SHOW TABLES FROM rw_schema").result_rows}
    assert {"usage_minute", "usage_hour", "usage_day", "alerts", "penalties", "schema_migrations"} <= tables


def test_a_repeated_insert_is_dropped_before_the_rollups(clickhouse) -> None:
    migrate(clickhouse, db="rw_dedup")
    window = dt.datetime(2031, 1, 2, 3, 4, tzinfo=dt.timezone.utc)
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
    assert "applied 2 migrations" in first.stdout
    assert second.returncode == 0 and "up to date" in second.stdout
