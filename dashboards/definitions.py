"""The Grafana dashboards, defined once here and written as JSON to ``dashboards/json/``
(``python -m ratewarden.dashboards.definitions``; a test checks the files are up to date): the
usage dashboards on ClickHouse below, and the processes' metrics on Prometheus
(``ratewarden.dashboards.prometheus``).

Panels query ClickHouse through the ``grafana-clickhouse-datasource`` plugin with its time
macros (``$__timeFilter``, ``$__timeInterval``, ``$__fromTime``, ``$__toTime``) and the
template variables ``tier``, ``client`` and ``endpoint`` (``__all`` means every value).
Each panel also lists the columns it expects, which the tests check against real rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .model import dashboard, placed
from .prometheus import METRICS_UID, metrics_dashboard

__all__ = ["Panel", "DASHBOARDS", "ALL_UIDS", "dashboard_json", "write_all", "JSON_DIR", "DATASOURCE", "FOLDER"]

JSON_DIR = Path(__file__).parent / "json"
DATASOURCE = {"type": "grafana-clickhouse-datasource", "uid": "ratewarden-clickhouse"}
FOLDER = {"uid": "ratewarden", "title": "ratewarden"}
ALL = "__all"
TABLE, TIME_SERIES = 1, 0  # the plugin's query formats

_TIER = f"('${{tier}}' = '{ALL}' OR tier = '${{tier}}')"
_CLIENT = f"('${{client}}' = '{ALL}' OR client_id = '${{client}}')"
_ENDPOINT = f"('${{endpoint}}' = '{ALL}' OR route = '${{endpoint}}')"
_USAGE = "ratewarden.usage_minute"


@dataclass(frozen=True)
class Panel:
    """A panel on ClickHouse: its SQL (with the plugin's macros) and the columns it returns."""

    title: str
    kind: str  # timeseries | table | stat | bargauge
    sql: str
    columns: tuple[str, ...]
    width: int = 12
    height: int = 8

    @property
    def format(self) -> int:
        """The plugin's query format for this kind of panel."""
        return TIME_SERIES if self.kind == "timeseries" else TABLE


OVERVIEW = [
    Panel("Requests per second by tier", "timeseries", f"""
SELECT $__timeInterval(window_start) AS time, tier, sum(requests) / $__interval_s AS rps
FROM {_USAGE} WHERE $__timeFilter(window_start) AND client_id != '' AND {_TIER} AND {_ENDPOINT}
GROUP BY time, tier ORDER BY time""", ("time", "tier", "rps")),
    Panel("Denials per second by tier", "timeseries", f"""
SELECT $__timeInterval(window_start) AS time, tier, sumIf(requests, decision = 'denied') / $__interval_s AS denied_rps
FROM {_USAGE} WHERE $__timeFilter(window_start) AND client_id != '' AND {_TIER} AND {_ENDPOINT}
GROUP BY time, tier ORDER BY time""", ("time", "tier", "denied_rps")),
    Panel("Top clients", "table", f"""
SELECT client_id, any(tier) AS client_tier, sum(requests) AS total, sumIf(requests, decision = 'denied') AS denied
FROM {_USAGE} WHERE $__timeFilter(window_start) AND client_id != '' AND {_TIER} AND {_ENDPOINT}
GROUP BY client_id ORDER BY total DESC LIMIT 20""", ("client_id", "client_tier", "total", "denied")),
    Panel("Endpoints", "table", f"""
SELECT route, sum(requests) AS total, sumIf(requests, decision = 'denied') AS denied,
       sumIf(requests, status_class = '5xx') AS errors,
       round(sum(latency_sum_ms) / greatest(sum(requests), 1), 2) AS mean_ms
FROM {_USAGE} WHERE $__timeFilter(window_start) AND client_id != '' AND {_TIER} AND {_ENDPOINT}
GROUP BY route ORDER BY total DESC""", ("route", "total", "denied", "errors", "mean_ms")),
]

CLIENT = [
    Panel("Requests and denials", "timeseries", f"""
SELECT $__timeInterval(window_start) AS time, sum(requests) AS total, sumIf(requests, decision = 'denied') AS denied
FROM {_USAGE} WHERE $__timeFilter(window_start) AND {_CLIENT} AND client_id != '' AND {_ENDPOINT}
GROUP BY time ORDER BY time""", ("time", "total", "denied")),
    Panel("Status classes", "timeseries", f"""
SELECT $__timeInterval(window_start) AS time, status_class, sum(requests) AS total
FROM {_USAGE} WHERE $__timeFilter(window_start) AND {_CLIENT} AND client_id != '' AND {_ENDPOINT}
GROUP BY time, status_class ORDER BY time""", ("time", "status_class", "total")),
    Panel("Endpoints of the client", "table", f"""
SELECT route, method, sum(requests) AS total, sumIf(requests, decision = 'denied') AS denied,
       max(latency_max_ms) AS max_ms
FROM {_USAGE} WHERE $__timeFilter(window_start) AND {_CLIENT} AND client_id != '' AND {_ENDPOINT}
GROUP BY route, method ORDER BY total DESC""", ("route", "method", "total", "denied", "max_ms")),
    Panel("Alerts of the client", "table", f"""
SELECT last_seen, alert_type, severity, occurrences, suggested_action
FROM ratewarden.alerts FINAL WHERE last_seen >= $__fromTime AND first_seen <= $__toTime AND {_CLIENT}
ORDER BY last_seen DESC LIMIT 50""", ("last_seen", "alert_type", "severity", "occurrences", "suggested_action")),
]

ABUSE = [
    Panel("Alerts by type", "timeseries", f"""
SELECT $__timeInterval(first_seen) AS time, alert_type, count() AS alerts
FROM ratewarden.alerts FINAL WHERE $__timeFilter(first_seen) AND {_TIER}
GROUP BY time, alert_type ORDER BY time""", ("time", "alert_type", "alerts")),
    Panel("Open alerts", "table", f"""
SELECT last_seen, alert_type, severity, client_id, tier, occurrences, evidence, suggested_action
FROM ratewarden.alerts FINAL WHERE last_seen >= $__fromTime AND first_seen <= $__toTime AND {_TIER} AND {_CLIENT}
ORDER BY last_seen DESC LIMIT 100""",
          ("last_seen", "alert_type", "severity", "client_id", "tier", "occurrences", "evidence", "suggested_action"),
          width=24),
    Panel("Penalties", "table", f"""
SELECT created_at, client_id, action, detector, expires_at, reason
FROM ratewarden.penalties FINAL WHERE $__timeFilter(created_at) AND {_TIER} AND {_CLIENT}
ORDER BY created_at DESC LIMIT 100""", ("created_at", "client_id", "action", "detector", "expires_at", "reason"),
          width=24),
    Panel("Most denied clients", "bargauge", f"""
SELECT client_id, sumIf(requests, decision = 'denied') AS denied
FROM {_USAGE} WHERE $__timeFilter(window_start) AND client_id != '' AND {_TIER}
GROUP BY client_id HAVING denied > 0 ORDER BY denied DESC LIMIT 10""", ("client_id", "denied")),
    Panel("Shadow rules: requests they would have denied", "table", f"""
SELECT shadow_rule, sum(requests) AS would_deny, uniqExact(client_id) AS clients,
       arrayStringConcat(topK(5)(client_id), ', ') AS top_clients
FROM {_USAGE} WHERE $__timeFilter(window_start) AND shadow_rule != '' AND {_TIER} AND {_CLIENT} AND {_ENDPOINT}
GROUP BY shadow_rule ORDER BY would_deny DESC""", ("shadow_rule", "would_deny", "clients", "top_clients"), width=24),
]

QUOTAS = [
    Panel("Admitted cost today by client", "bargauge", f"""
SELECT client_id, sumIf(cost, decision = 'allowed') AS used_today
FROM ratewarden.usage_day WHERE day = toDate($__toTime, 'UTC') AND client_id != '' AND {_TIER} AND {_CLIENT}
GROUP BY client_id ORDER BY used_today DESC LIMIT 20""", ("client_id", "used_today")),
    Panel("Admitted cost this month by client", "table", f"""
SELECT client_id, any(tier) AS client_tier, sumIf(cost, decision = 'allowed') AS used_this_month
FROM ratewarden.usage_day WHERE day >= toStartOfMonth(toDate($__toTime, 'UTC')) AND day <= toDate($__toTime, 'UTC')
  AND client_id != '' AND {_TIER} AND {_CLIENT}
GROUP BY client_id ORDER BY used_this_month DESC LIMIT 50""", ("client_id", "client_tier", "used_this_month")),
    Panel("Daily admitted cost", "timeseries", f"""
SELECT toDateTime(day) AS time, sumIf(cost, decision = 'allowed') AS admitted_cost
FROM ratewarden.usage_day WHERE day >= toDate($__fromTime, 'UTC') AND day <= toDate($__toTime, 'UTC')
  AND {_TIER} AND {_CLIENT}
GROUP BY time ORDER BY time""", ("time", "admitted_cost"), width=24),
]

DASHBOARDS: dict[str, tuple[str, list[Panel]]] = {  # uid -> (title, panels)
    "ratewarden-overview": ("ratewarden: overview", OVERVIEW),
    "ratewarden-client": ("ratewarden: client drill-down", CLIENT),
    "ratewarden-abuse": ("ratewarden: abuse and alerts", ABUSE),
    "ratewarden-quotas": ("ratewarden: quotas", QUOTAS),
}
ALL_UIDS = [*DASHBOARDS, METRICS_UID]  # and the Prometheus one


def _variable(name: str, sql: str) -> dict[str, Any]:
    return {"name": name, "label": name, "type": "query", "datasource": DATASOURCE, "query": sql,
            "definition": sql, "refresh": 2, "includeAll": True, "allValue": ALL, "multi": False,
            "current": {"text": "All", "value": "$__all"}, "sort": 1}


VARIABLES = [
    _variable("tier", f"SELECT DISTINCT tier FROM {_USAGE} WHERE $__timeFilter(window_start) AND tier != ''"),
    _variable("client", f"SELECT DISTINCT client_id FROM {_USAGE} WHERE $__timeFilter(window_start) "
                        f"AND client_id != '' AND {_TIER} ORDER BY client_id LIMIT 1000"),
    _variable("endpoint", f"SELECT DISTINCT route FROM {_USAGE} WHERE $__timeFilter(window_start) AND route != ''"),
]


def dashboard_json(uid: str) -> dict[str, Any]:
    """The Grafana dashboard model for ``uid``."""
    if uid == METRICS_UID:
        return metrics_dashboard()
    title, panels = DASHBOARDS[uid]
    out = [{
        "id": number, "title": panel.title, "type": panel.kind, "datasource": DATASOURCE, "gridPos": position,
        "description": "columns: " + ", ".join(panel.columns),
        "targets": [{"refId": "A", "datasource": DATASOURCE, "editorType": "sql", "queryType": "sql",
                     "format": panel.format, "rawSql": panel.sql.strip()}],
    } for number, panel, position in placed(panels)]
    return dashboard(uid, title, out, refresh="10s", variables=VARIABLES)


def write_all(directory: Path = JSON_DIR) -> list[Path]:
    """Write every dashboard's JSON to ``directory`` (``<uid without ratewarden->.json``); returns the files."""
    directory.mkdir(exist_ok=True)
    written = []
    for uid in ALL_UIDS:
        path = directory / f"{uid.removeprefix('ratewarden-')}.json"
        path.write_text(json.dumps(dashboard_json(uid), indent=2) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_all():
        print(f"wrote {path}")
