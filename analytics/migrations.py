"""Versioned, idempotent ClickHouse migrations (``ratewarden db migrate``).

Each migration is a list of statements applied in order; applied versions are recorded
in ``schema_migrations``. Every statement is written to be re-runnable (``IF NOT
EXISTS``), so a migration interrupted half-way completes on the next run.

Exactly-once aggregates: ``usage_minute`` is a MergeTree with a non-replicated
deduplication window, and writers pass a deterministic ``insert_deduplication_token``
per (window, partition) batch (``dedup_insert_settings``). A repeated insert (a worker killed after writing but
before committing its offsets) is dropped as a whole block, and so never reaches the
hourly and daily rollups that materialized views build from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .client import ClickHouse

__all__ = ["Migration", "MIGRATIONS", "migrate", "applied_versions", "dedup_insert_settings"]


def dedup_insert_settings(token: str) -> dict[str, object]:
    """Insert settings that make a repeated batch (same ``token``) a no-op, rollups included."""
    return {"insert_deduplication_token": token, "deduplicate_blocks_in_dependent_materialized_views": 1}


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def _migrations(db: str, ttl_days: int, rollup_ttl_days: int) -> list[Migration]:
    return [
        Migration(1, "usage tables and rollups", (
            f"CREATE DATABASE IF NOT EXISTS {db}",
            f"""CREATE TABLE IF NOT EXISTS {db}.usage_minute (
                window_start DateTime('UTC'),
                client_id String,
                tier LowCardinality(String),
                route String,
                method LowCardinality(String),
                status_class LowCardinality(String),
                decision LowCardinality(String),
                requests UInt64,
                cost UInt64,
                latency_sum_ms Float64,
                latency_max_ms Float64
            ) ENGINE = MergeTree
            ORDER BY (window_start, client_id, route, method, status_class, decision)
            TTL window_start + INTERVAL {ttl_days} DAY
            SETTINGS non_replicated_deduplication_window = 100000""",
            f"""CREATE TABLE IF NOT EXISTS {db}.usage_hour (
                hour DateTime('UTC'), client_id String, tier LowCardinality(String), route String,
                decision LowCardinality(String), requests UInt64, cost UInt64
            ) ENGINE = SummingMergeTree ORDER BY (hour, client_id, route, decision, tier)
            TTL hour + INTERVAL {rollup_ttl_days} DAY
            SETTINGS non_replicated_deduplication_window = 100000""",
            f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.usage_hour_mv TO {db}.usage_hour AS
                SELECT toStartOfHour(window_start) AS hour, client_id, tier, route, decision,
                       sum(requests) AS requests, sum(cost) AS cost
                FROM {db}.usage_minute GROUP BY hour, client_id, tier, route, decision""",
            f"""CREATE TABLE IF NOT EXISTS {db}.usage_day (
                day Date, client_id String, tier LowCardinality(String), decision LowCardinality(String),
                requests UInt64, cost UInt64
            ) ENGINE = SummingMergeTree ORDER BY (day, client_id, decision, tier)
            TTL day + INTERVAL {rollup_ttl_days} DAY
            SETTINGS non_replicated_deduplication_window = 100000""",
            f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.usage_day_mv TO {db}.usage_day AS
                SELECT toDate(window_start) AS day, client_id, tier, decision,
                       sum(requests) AS requests, sum(cost) AS cost
                FROM {db}.usage_minute GROUP BY day, client_id, tier, decision""",
        )),
        Migration(2, "alerts and penalties", (
            f"""CREATE TABLE IF NOT EXISTS {db}.alerts (
                dedup_key String, alert_type LowCardinality(String), severity LowCardinality(String),
                client_id String, window_start DateTime('UTC'), first_seen DateTime64(3, 'UTC'),
                last_seen DateTime64(3, 'UTC'), occurrences UInt32, evidence String, suggested_action String,
                version UInt64
            ) ENGINE = ReplacingMergeTree(version) ORDER BY dedup_key
            TTL toDateTime(last_seen) + INTERVAL {rollup_ttl_days} DAY""",
            f"""CREATE TABLE IF NOT EXISTS {db}.penalties (
                penalty_id String, client_id String, action LowCardinality(String), tier String,
                detector LowCardinality(String), reason String, created_at DateTime64(3, 'UTC'),
                expires_at DateTime64(3, 'UTC')
            ) ENGINE = ReplacingMergeTree ORDER BY (penalty_id)
            TTL toDateTime(created_at) + INTERVAL {rollup_ttl_days} DAY""",
        )),
        Migration(3, "usage provenance for exactly-once writes", (
            f"ALTER TABLE {db}.usage_minute ADD COLUMN IF NOT EXISTS source LowCardinality(String) DEFAULT ''",
            f"ALTER TABLE {db}.usage_minute ADD COLUMN IF NOT EXISTS source_offset Int64 DEFAULT -1",
            f"ALTER TABLE {db}.alerts ADD COLUMN IF NOT EXISTS tier LowCardinality(String) DEFAULT '' AFTER client_id",
            f"""CREATE TABLE IF NOT EXISTS {db}.sink_offsets (
                source LowCardinality(String), source_offset Int64, written_at DateTime('UTC') DEFAULT now()
            ) ENGINE = MergeTree ORDER BY (source, source_offset)
            TTL written_at + INTERVAL {ttl_days} DAY
            SETTINGS non_replicated_deduplication_window = 100000""",
        )),
        Migration(4, "shadow rules in usage", (
            f"ALTER TABLE {db}.usage_minute ADD COLUMN IF NOT EXISTS shadow_rule LowCardinality(String) DEFAULT '' "
            "AFTER decision",
        )),
        Migration(5, "denials by rule and kind in usage", (
            f"ALTER TABLE {db}.usage_minute ADD COLUMN IF NOT EXISTS deny_rule LowCardinality(String) DEFAULT '' "
            "AFTER shadow_rule",
            f"ALTER TABLE {db}.usage_minute ADD COLUMN IF NOT EXISTS deny_kind LowCardinality(String) DEFAULT '' "
            "AFTER deny_rule",
        )),
    ]


MIGRATIONS = _migrations("ratewarden", 30, 400)


def applied_versions(client: ClickHouse, db: str = "ratewarden") -> set[int]:
    client.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    client.command(f"""CREATE TABLE IF NOT EXISTS {db}.schema_migrations (
        version UInt32, name String, applied_at DateTime('UTC') DEFAULT now()
    ) ENGINE = ReplacingMergeTree ORDER BY version""")
    return {row[0] for row in client.query(f"SELECT version FROM {db}.schema_migrations FINAL").result_rows}


def migrate(client: ClickHouse, db: str = "ratewarden", ttl_days: int = 30,
            rollup_ttl_days: int = 400) -> list[Migration]:
    """Apply every migration not yet applied; returns those applied now (none on a second run)."""
    done = applied_versions(client, db)
    applied = []
    for migration in _migrations(db, ttl_days, rollup_ttl_days):
        if migration.version in done:
            continue
        for statement in migration.statements:
            client.command(statement)
        client.insert(f"{db}.schema_migrations", [[migration.version, migration.name]],
                      column_names=["version", "name"])
        applied.append(migration)
    return applied
