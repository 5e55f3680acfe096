"""The operations dashboard on Prometheus: what the processes export on ``/metrics`` (the API
process's decisions, latency and event publishing; the stream worker's throughput, lag, delay,
alerts and deliveries), as opposed to the usage dashboards on ClickHouse.

Each panel names the process whose metrics it reads (``api`` or ``worker``); a test scrapes each
process's real ``/metrics`` and checks every expression names only metrics it exposes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from .model import dashboard, placed

__all__ = ["PROMETHEUS", "PromPanel", "METRICS_PANELS", "METRICS_UID", "metrics_dashboard", "metric_names"]

PROMETHEUS = {"type": "prometheus", "uid": "ratewarden-prometheus"}
METRICS_UID = "ratewarden-metrics"
_RATE = "[$__rate_interval]"
_LATENCY = f"sum by (le, tier) (rate(ratewarden_decision_duration_seconds_bucket{_RATE}))"


@dataclass(frozen=True)
class PromPanel:
    """A time-series panel of PromQL expressions, each with its legend."""

    title: str
    source: Literal["api", "worker"]  # the process whose /metrics the expressions read
    targets: tuple[tuple[str, str], ...]  # (PromQL, legend)
    unit: str = "short"
    width: int = 12
    height: int = 8


METRICS_PANELS = [
    PromPanel("Decisions per second by outcome", "api", (
        (f"sum by (outcome) (rate(ratewarden_decisions_total{_RATE}))", "{{outcome}}"),), "reqps"),
    PromPanel("Decision latency by tier (p50, p99)", "api", (
        (f"histogram_quantile(0.5, {_LATENCY})", "p50 {{tier}}"),
        (f"histogram_quantile(0.99, {_LATENCY})", "p99 {{tier}}")), "s"),
    PromPanel("Denied share by tier", "api", (
        (f'sum by (tier) (rate(ratewarden_decision_duration_seconds_count{{outcome=~"denied|denied_locally"}}{_RATE}))'
         f" / sum by (tier) (rate(ratewarden_decision_duration_seconds_count{_RATE}))", "{{tier}}"),), "percentunit"),
    PromPanel("Redis failures and degraded decisions per second", "api", (
        (f"sum(rate(ratewarden_redis_failures_total{_RATE}))", "Redis failures"),
        (f'sum(rate(ratewarden_decisions_total{{outcome="degraded"}}{_RATE}))', "degraded decisions"),
        (f"sum(rate(ratewarden_cluster_refunds_total{_RATE}))", "cluster refunds")), "reqps"),
    PromPanel("Request events per second", "api", (
        (f"sum(rate(ratewarden_events_published_total{_RATE}))", "published"),
        (f"sum(rate(ratewarden_events_spilled_total{_RATE}))", "spilled to disk"),
        (f"sum(rate(ratewarden_events_replayed_total{_RATE}))", "replayed"),
        (f"sum(rate(ratewarden_events_dropped_total{_RATE}))", "dropped")), "ops"),
    PromPanel("Events waiting in memory", "api", (("sum(ratewarden_events_queue_depth)", "queued"),)),
    PromPanel("Stream: events read, usage rows written per second", "worker", (
        (f"sum(rate(ratewarden_stream_events_total{_RATE}))", "events read"),
        (f"sum(rate(ratewarden_stream_usage_rows_total{_RATE}))", "usage rows written"),
        (f"sum(rate(ratewarden_stream_windows_total{_RATE}))", "window summaries")), "ops"),
    PromPanel("Stream lag (events not yet read)", "worker", (("sum(ratewarden_stream_lag)", "lag"),)),
    PromPanel("Event to usage written (p50, p99)", "worker", (
        (f"histogram_quantile(0.5, sum by (le) (rate(ratewarden_stream_delay_seconds_bucket{_RATE})))", "p50"),
        (f"histogram_quantile(0.99, sum by (le) (rate(ratewarden_stream_delay_seconds_bucket{_RATE})))", "p99")),
              "s"),
    PromPanel("Duplicates and dead letters per second", "worker", (
        (f"sum(rate(ratewarden_stream_duplicates_total{_RATE}))", "duplicates"),
        (f"sum(rate(ratewarden_stream_dead_letters_total{_RATE}))", "dead letters")), "ops"),
    PromPanel("Alerts and penalties per minute", "worker", (
        (f"sum by (alert_type) (rate(ratewarden_stream_alerts_total{_RATE})) * 60", "{{alert_type}}"),
        (f"sum by (action) (rate(ratewarden_stream_penalties_total{_RATE})) * 60", "penalty: {{action}}"))),
    PromPanel("Alert deliveries per minute by outcome", "worker", (
        (f"sum by (outcome) (rate(ratewarden_stream_deliveries_total{_RATE})) * 60", "{{outcome}}"),)),
]

_METRIC = re.compile(r"\bratewarden_[a-z0-9_]+\b")


def metric_names(expression: str) -> set[str]:
    """The ratewarden series a PromQL expression reads."""
    return set(_METRIC.findall(expression))


def metrics_dashboard() -> dict[str, Any]:
    """The Grafana dashboard model of the Prometheus metrics."""
    panels = [{
        "id": number, "title": panel.title, "type": "timeseries", "datasource": PROMETHEUS, "gridPos": position,
        "description": f"from the {panel.source} process's /metrics",
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "targets": [{"refId": chr(ord("A") + i), "datasource": PROMETHEUS, "expr": expr, "legendFormat": legend}
                    for i, (expr, legend) in enumerate(panel.targets)],
    } for number, panel, position in placed(METRICS_PANELS)]
    return dashboard(METRICS_UID, "ratewarden: processes (Prometheus)", panels, refresh="30s")
