"""Grafana dashboards: the JSON files match their definitions, every panel query (macros and
variables expanded as the ClickHouse plugin does) runs against seeded ClickHouse and returns
rows with the panel's columns, every PromQL expression of the Prometheus dashboard names only
series its process's real /metrics exposes, and ``dashboards push`` speaks Grafana's HTTP API."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgspec
import pytest
from typer.testing import CliRunner

from ratewarden.analytics.migrations import migrate
from ratewarden.cli import app as cli
from ratewarden.dashboards.definitions import ALL_UIDS, DASHBOARDS, FOLDER, JSON_DIR, VARIABLES, dashboard_json
from ratewarden.dashboards.macros import expand
from ratewarden.dashboards.prometheus import METRICS_PANELS, METRICS_UID, PROMETHEUS, metric_names
from ratewarden.dashboards.push import datasource_model, push
from ratewarden.local import free_port
from ratewarden.stream.alerts import AlertBook, write_alerts
from ratewarden.stream.detectors import Alert
from ratewarden.stream.penalties import Penalty, write_penalties
from ratewarden.stream.simulate import events, scenario
from ratewarden.stream.sink import UsageSink

from .metrics_support import series_names

UTC = dt.UTC
SCRAPER = "ip:203.0.20.7"  # has usage on the items route, an alert and a penalty
SPECIFIC = {"tier": "free", "client": SCRAPER, "endpoint": "GET /v1/items/{item_id}"}
EVERYTHING = {"tier": "__all", "client": "__all", "endpoint": "__all"}


def test_dashboard_files_are_generated_from_the_definitions() -> None:
    files = sorted(JSON_DIR.glob("*.json"))
    assert len(files) == len(ALL_UIDS) == len(DASHBOARDS) + 1 == 5
    for uid in ALL_UIDS:
        on_disk = json.loads((JSON_DIR / f"{uid.removeprefix('ratewarden-')}.json").read_text())
        assert on_disk == dashboard_json(uid), f"run: python -m ratewarden.dashboards.definitions ({uid})"
        if uid == METRICS_UID:
            assert all(p["datasource"] == PROMETHEUS and p["targets"] for p in on_disk["panels"])
            continue
        assert {v["name"] for v in on_disk["templating"]["list"]} == {"tier", "client", "endpoint"}
        assert all(p["datasource"]["type"] == "grafana-clickhouse-datasource" for p in on_disk["panels"])


# each process's /metrics, scraped in a process of its own with the modules that process loads
SCRAPE = {
    "api": """
import sys
from starlette.testclient import TestClient
from ratewarden.enforcer import Enforcer, EnforcerSettings, load_policy
from ratewarden.examples.demo_fastapi.app import POLICY_FILE, create_app
app = create_app(Enforcer(load_policy(POLICY_FILE), EnforcerSettings(redis_url=sys.argv[1])))
with TestClient(app) as client:
    client.get("/v1/items")
    sys.stdout.write(client.get("/metrics").text)
""",
    "worker": """
import sys, urllib.request
import ratewarden.stream.app  # what `ratewarden worker` loads
from ratewarden.local import free_port
from ratewarden.stream import metrics
address = f"127.0.0.1:{free_port()}"
server = metrics.serve(address)  # the worker's metrics server (RATEWARDEN_WORKER_METRICS_ADDRESS)
sys.stdout.write(urllib.request.urlopen(f"http://{address}/metrics", timeout=10).read().decode())
server.shutdown()
""",
}


def test_every_promql_expression_names_series_its_process_exposes(redis_url: str) -> None:
    exposed = {source: series_names(subprocess.run([sys.executable, "-c", code, redis_url], capture_output=True,
                                                   text=True, timeout=120, check=True).stdout)
               for source, code in SCRAPE.items()}
    checked = 0
    for panel in METRICS_PANELS:
        for expression, _legend in panel.targets:
            names = metric_names(expression)
            assert names and names <= exposed[panel.source].keys(), (panel.title, names - exposed[panel.source].keys())
            grouped = {label.strip() for labels in re.findall(r"by \(([^)]*)\)", expression)
                       for label in labels.split(",")}
            for name in names:  # labels grouped by are on the series (where the page has samples to tell)
                seen = exposed[panel.source][name]
                assert not seen or grouped <= seen, (panel.title, name, grouped - seen)
            checked += 1
    print(f"\n{checked} PromQL expressions in {len(METRICS_PANELS)} panels; series names exposed: "
          f"api {len(exposed['api'])}, worker {len(exposed['worker'])}")
    assert checked >= 20


@pytest.fixture(scope="module")
def seeded(clickhouse: Any) -> tuple[dt.datetime, dt.datetime]:
    migrate(clickhouse, db="ratewarden")
    start = dt.datetime.now(UTC).replace(second=0, microsecond=0) - dt.timedelta(minutes=30)
    sink = UsageSink(clickhouse, "dashboards", database="ratewarden")
    sink.assign([0])
    for offset, event in enumerate(events(scenario(legit=20, per_abuse=2), 10, int(start.timestamp()) * 1_000_000)):
        if event.client_id == SCRAPER and offset % 3 == 0:  # a shadow rule that would have denied some
            event = msgspec.structs.replace(event, shadow_denied="strict-per-ip")
        sink.add(0, offset, event)
    sink.flush()
    book = AlertBook()
    at = start.timestamp() + 120
    write_alerts(clickhouse, [book.record(Alert("scraping", "warning", SCRAPER, at, {"distinct_paths": 80}, "throttle"),
                                          at, tier="free")[0]], "ratewarden")
    write_penalties(clickhouse, [Penalty("p", SCRAPER, "throttle", "free", "scraping", "scraping", at, at + 900)],
                    "ratewarden")
    return start, start + dt.timedelta(minutes=31)


@pytest.mark.parametrize("uid, variables", list(itertools.product(DASHBOARDS, ["everything", "specific"])))
def test_every_panel_query_runs_and_returns_its_columns(clickhouse: Any, seeded: tuple[dt.datetime, dt.datetime],
                                                        uid: str, variables: str) -> None:
    start, end = seeded
    values = EVERYTHING if variables == "everything" else SPECIFIC
    for panel in DASHBOARDS[uid][1]:
        sql = expand(panel.sql, start, end, interval_s=60, variables=values)
        result = clickhouse.query(sql)
        assert tuple(result.column_names) == panel.columns, panel.title
        assert result.result_rows, f"{uid} / {panel.title} returned no rows for {values}"


def test_template_variable_queries_list_their_values(clickhouse: Any, seeded: tuple[dt.datetime, dt.datetime]) -> None:
    start, end = seeded
    found = {}
    for variable in VARIABLES:
        sql = expand(variable["query"], start, end, interval_s=60, variables={"tier": "__all"})
        found[variable["name"]] = {row[0] for row in clickhouse.query(sql).result_rows}
    assert found["tier"] == {"free", "paid", "trusted"}
    assert SCRAPER in found["client"] and SPECIFIC["endpoint"] in found["endpoint"]


def test_macros_expand_like_the_plugin() -> None:
    start, end = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), dt.datetime(2026, 1, 2, 4, 4, 5, tzinfo=UTC)
    sql = expand("SELECT $__timeInterval(t) FROM x WHERE $__timeFilter(t) AND d >= toDate($__fromTime) "
                 "AND $__dateFilter(d) AND v = '${tier}' LIMIT $__interval_s", start, end, 30, {"tier": "free"})
    assert sql == ("SELECT toStartOfInterval(toDateTime(t), INTERVAL 30 second) FROM x WHERE t >= '1767323045' "
                   "AND t <= '1767326645' AND d >= toDate(toDateTime(intDiv(1767323045000,1000))) "
                   "AND d >= '2026-01-02' AND d <= '2026-01-02' AND v = 'free' LIMIT 30")
    with pytest.raises(ValueError):
        expand("SELECT $__unknownMacro", start, end, 30)


class FakeGrafana:
    """A local stand-in for Grafana's HTTP API that records requests and keeps state."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, Any] | None, str]] = []
        self.folders: set[str] = set()
        self.datasources: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.token = "glsa_token"  # the one it accepts
        grafana = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                authorization = self.headers.get("authorization", "")
                grafana.requests.append((self.command, self.path, body, authorization))
                if authorization != f"Bearer {grafana.token}":
                    self._answer(401, {"message": "invalid API key"})
                    return
                self._answer(*grafana.route(self.command, self.path, body))

            do_GET = do_POST = do_PUT = _handle

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "GET" and path.startswith("/api/folders/"):
            uid = path.rsplit("/", 1)[1]
            return (200, {"uid": uid}) if uid in self.folders else (404, {"message": "folder not found"})
        if method == "POST" and path == "/api/folders":
            self.folders.add(body["uid"])
            return 200, {"uid": body["uid"], "title": body["title"]}
        if method == "GET" and path.startswith("/api/datasources/uid/"):
            uid = path.rsplit("/", 1)[1]
            return (200, self.datasources[uid]) if uid in self.datasources else (404, {"message": "not found"})
        if method in ("POST", "PUT") and path.startswith("/api/datasources"):
            self.datasources[body["uid"]] = body
            return 200, {"message": "ok"}
        if method == "POST" and path == "/api/dashboards/db":
            if body["folderUid"] not in self.folders:
                return 400, {"message": "folder missing"}
            self.dashboards[body["dashboard"]["uid"]] = body
            return 200, {"status": "success", "uid": body["dashboard"]["uid"]}
        return 404, {"message": f"unexpected {method} {path}"}


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    fake = FakeGrafana()
    yield fake
    fake.server.shutdown()


def test_push_creates_the_folder_once_upserts_dashboards_and_the_datasource(grafana: FakeGrafana) -> None:
    datasource = datasource_model("clickhouse", password="s3cret")
    first = push(grafana.url, "glsa_token", datasource)
    assert first.folder_created and first.datasource == "created" and len(first.dashboards) == 5
    second = push(grafana.url, "glsa_token", datasource)
    assert not second.folder_created and second.datasource == "updated"

    calls = [(method, path) for method, path, _, _ in grafana.requests]
    assert calls.count(("POST", "/api/folders")) == 1
    assert calls.count(("POST", "/api/datasources")) == 1
    assert calls.count(("PUT", f"/api/datasources/uid/{datasource['uid']}")) == 1
    assert calls.count(("POST", "/api/dashboards/db")) == 10
    assert all(auth == "Bearer glsa_token" for *_, auth in grafana.requests)
    assert set(grafana.folders) == {FOLDER["uid"]} and set(grafana.dashboards) == set(ALL_UIDS)
    for body in grafana.dashboards.values():
        assert body["overwrite"] is True and body["folderUid"] == FOLDER["uid"] and body["dashboard"]["id"] is None
    ds = grafana.datasources[datasource["uid"]]
    assert ds["type"] == "grafana-clickhouse-datasource" and ds["jsonData"]["host"] == "clickhouse"
    assert ds["secureJsonData"]["password"] == "s3cret"


def test_push_with_a_refused_token_or_no_grafana_exits_1_naming_the_option(grafana: FakeGrafana) -> None:
    refused = CliRunner().invoke(cli, ["dashboards", "push", "--url", grafana.url, "--token", "glsa_wrong"])
    assert refused.exit_code == 1, refused.output
    said = " ".join(refused.output.split())  # as one line, however the terminal wrapped it
    assert f"Grafana at {grafana.url} (--url, GRAFANA_URL) answered HTTP 401: check --token (GRAFANA_TOKEN)" in said
    assert "glsa_wrong" not in refused.output
    nobody = CliRunner().invoke(cli, ["dashboards", "push", "--url", f"http://127.0.0.1:{free_port()}", "--token", "t"])
    assert nobody.exit_code == 1 and "could not be reached" in nobody.output, nobody.output
