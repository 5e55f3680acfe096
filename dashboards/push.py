"""``ratewarden dashboards push``: upload the dashboards (and the ClickHouse datasource) to a
Grafana through grafana-client, idempotently: the folder is created once, each dashboard is
upserted with ``overwrite``, the datasource is created or updated by its uid. The Prometheus
dashboard expects a Prometheus datasource of uid ``ratewarden-prometheus``, which it does not make."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError

from .definitions import ALL_UIDS, DATASOURCE, FOLDER, dashboard_json

__all__ = ["push", "PushReport", "datasource_model"]


@dataclass
class PushReport:
    """What a push did: whether it made the folder, what it did to the datasource, the dashboards it wrote."""

    folder_created: bool = False
    datasource: str = ""  # created | updated | skipped
    dashboards: list[str] = field(default_factory=list)


def datasource_model(clickhouse_host: str, port: int = 8123, username: str = "default", password: str = "",
                     database: str = "ratewarden") -> dict[str, Any]:
    """The ClickHouse datasource as Grafana's API takes it (same uid as the provisioning file)."""
    return {"name": "ratewarden ClickHouse", "uid": DATASOURCE["uid"], "type": DATASOURCE["type"], "access": "proxy",
            "jsonData": {"host": clickhouse_host, "port": port, "protocol": "http", "username": username,
                         "defaultDatabase": database},
            "secureJsonData": {"password": password}}


def _missing(exc: GrafanaClientError) -> bool:
    return exc.status_code == 404


def push(url: str, token: str | tuple[str, str], datasource: dict[str, Any] | None = None,
         folder_title: str = FOLDER["title"], timeout_s: float = 10.0) -> PushReport:
    """Upload every dashboard into the ratewarden folder; with ``datasource``, upsert it too."""
    api = GrafanaApi.from_url(url, credential=token, timeout=timeout_s)
    report = PushReport()
    try:
        api.folder.get_folder(FOLDER["uid"])
    except GrafanaClientError as exc:
        if not _missing(exc):
            raise
        api.folder.create_folder(folder_title, uid=FOLDER["uid"])
        report.folder_created = True
    if datasource is not None:
        try:
            api.datasource.get_datasource_by_uid(datasource["uid"])
        except GrafanaClientError as exc:
            if not _missing(exc):
                raise
            api.datasource.create_datasource(datasource)
            report.datasource = "created"
        else:
            api.datasource.update_datasource_by_uid(datasource["uid"], datasource)
            report.datasource = "updated"
    else:
        report.datasource = "skipped"
    for uid in ALL_UIDS:
        api.dashboard.update_dashboard({"dashboard": {**dashboard_json(uid), "id": None}, "folderUid": FOLDER["uid"],
                                        "overwrite": True, "message": "ratewarden dashboards push"})
        report.dashboards.append(uid)
    return report
