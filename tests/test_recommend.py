"""Recommendations on seeded usage (chDB): the would-deny counts equal an independent replay of the
same minute aggregates, and a staged proposal is a shadow rule a real enforcer (Valkey) evaluates."""

from __future__ import annotations

import datetime as dt
import json
import math
import random
from collections import defaultdict
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ratewarden.analytics.admin import AdminSettings, create_admin_app
from ratewarden.analytics.migrations import migrate
from ratewarden.cli import app as cli
from ratewarden.enforcer import Enforcer, EnforcerSettings, load_policy
from ratewarden.examples.demo_fastapi.app import POLICY_FILE, create_app
from ratewarden.local import free_port

from .helpers import wait_until

TOKEN = "admin-token-for-recommend-0123456789"
SECRET = "recommend-secret-0123456789abcdef"
DB = "rw_recommend"
AUTH = {"authorization": f"Bearer {TOKEN}"}
COLUMNS = ["window_start", "client_id", "tier", "route", "method", "status_class", "decision", "requests", "cost",
           "latency_sum_ms", "latency_max_ms"]
ABUSER = "k:scraper01"


def usage_rows(start: dt.datetime) -> list[list[Any]]:
    """Two hours of per-minute rows: 30 free and 8 paid clients at varied rates, each minute's
    requests split over routes and decisions (several rows per client and minute), and one free
    client far above the rest (it has an alert)."""
    rng = random.Random(18)
    rows = []
    clients = ([(f"k:free{i:02d}", "free", rng.randint(2, 14)) for i in range(30)]
               + [(f"k:paid{i:02d}", "paid", rng.randint(20, 90)) for i in range(8)] + [(ABUSER, "free", 240)])
    for minute in range(120):
        t = start + dt.timedelta(minutes=minute)
        for client_id, tier, rate in clients:
            total = max(0, int(rng.gauss(rate, rate / 3)))
            split = [total // 2, total // 3, total - total // 2 - total // 3]
            parts = zip(("GET /v1/items", "GET /v1/search", "GET /v1/items/{item_id}"),
                        ("allowed", "allowed", "denied"), split, strict=True)
            for route, decision, n in parts:
                if n:
                    rows.append([t, client_id, tier, route, "GET", "2xx" if decision == "allowed" else "4xx",
                                 decision, n, n, 5.0 * n, 9.0])
    return rows


@pytest.fixture(scope="module")
def seeded(clickhouse: Any) -> list[list[Any]]:
    migrate(clickhouse, db=DB)
    start = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) - dt.timedelta(hours=3)
    rows = usage_rows(start)
    clickhouse.insert(f"{DB}.usage_minute", rows, column_names=COLUMNS)
    seen = start + dt.timedelta(minutes=30)
    clickhouse.insert(f"{DB}.alerts", [[
        "scraping|" + ABUSER, "scraping", "high", ABUSER, "free", seen, seen, seen, 3, "{}", "block", 1]],
        column_names=["dedup_key", "alert_type", "severity", "client_id", "tier", "window_start", "first_seen",
                      "last_seen", "occurrences", "evidence", "suggested_action", "version"])
    return rows


@pytest.fixture(scope="module")
def admin_app(clickhouse: Any, redis_url: str, seeded: list[list[Any]]) -> FastAPI:
    return create_admin_app(AdminSettings(admin_token=TOKEN, api_key_secret=SECRET, redis_url=redis_url,
                                          clickhouse_database=DB, policy_file=str(POLICY_FILE)), clickhouse)


def replay(rows: list[list[Any]], tier: str, limit: int, left_out: set[str]) -> dict[str, int]:
    """The proposal's would-deny counts, recomputed here: each client's requests per minute (summed
    over its rows), and what a per-minute limit of ``limit`` would have refused of them."""
    per_minute: dict[tuple[str, dt.datetime], int] = defaultdict(int)
    for t, client_id, row_tier, *_, requests, _cost, _sum, _max in rows:
        if row_tier == tier:
            per_minute[client_id, t] += requests
    over = {key: n - limit for key, n in per_minute.items() if n > limit}
    return {"requests": sum(per_minute.values()),
            "would_deny_requests": sum(over.values()),
            "would_deny_clients": len({client for client, _ in over}),
            "would_deny_legit_requests": sum(n for (client, _), n in over.items() if client not in left_out),
            "would_deny_legit_clients": len({client for client, _ in over if client not in left_out})}


def peaks(rows: list[list[Any]], tier: str, left_out: set[str]) -> list[int]:
    per_minute: dict[tuple[str, dt.datetime], int] = defaultdict(int)
    for t, client_id, row_tier, *_, requests, _cost, _sum, _max in rows:
        if row_tier == tier and client_id not in left_out:
            per_minute[client_id, t] += requests
    best: dict[str, int] = defaultdict(int)
    for (client_id, _), n in per_minute.items():
        best[client_id] = max(best[client_id], n)
    return sorted(best.values())


def test_would_deny_counts_equal_an_independent_replay(admin: TestClient, seeded: list[list[Any]]) -> None:
    response = admin.get("/api/v1/recommendations", headers=AUTH,
                         params={"range": "24h", "percentile": 75, "headroom": 1.1})
    assert response.status_code == 200, response.text
    proposals = {p["tier"]: p for p in response.json()["proposals"]}
    assert set(proposals) == {"free", "paid"}
    assert proposals["free"]["excluded_clients"] == [ABUSER] and proposals["free"]["legit_clients"] == 30
    for tier, proposal in proposals.items():
        legit = peaks(seeded, tier, {ABUSER})
        at_percentile = legit[math.ceil(0.75 * len(legit)) - 1]
        assert proposal["peak_at_percentile"] == at_percentile
        assert proposal["limit"] == math.ceil(round(at_percentile * 1.1, 6))
        expected = replay(seeded, tier, proposal["limit"], {ABUSER})
        assert {k: proposal[k] for k in expected} == expected, tier
    free = proposals["free"]
    assert 0 < free["would_deny_legit_clients"] < free["legit_clients"]  # the replay has teeth: p75 of 30 peaks
    assert proposals["free"]["would_deny_clients"] == proposals["free"]["would_deny_legit_clients"] + 1  # the abuser
    print(f"\nfree: limit {proposals['free']['limit']}/min would have denied "
          f"{proposals['free']['would_deny_requests']} of {proposals['free']['requests']} requests, "
          f"{proposals['free']['would_deny_clients']} clients")


def test_a_staged_proposal_is_a_shadow_rule_the_enforcer_evaluates(admin: TestClient, redis_url: str, clickhouse: Any,
                                                                   seeded: list[list[Any]]) -> None:
    [proposal] = admin.get("/api/v1/recommendations", headers=AUTH,
                           params={"range": "24h", "tier": "free", "percentile": 10, "headroom": 1}).json()["proposals"]
    limit = proposal["limit"]
    assert limit < 20  # under the free tier's burst, so only the staged rule can object
    staged = admin.post("/api/v1/recommendations/stage", headers={**AUTH, "x-ratewarden-actor": "ops"},
                        json={"tier": "free", "limit": limit})
    assert staged.status_code == 200, staged.text
    assert staged.json()["rule"]["name"] == proposal["rule_name"] and staged.json()["rule"]["shadow"] is True
    assert [r["name"] for r in staged.json()["plan"]["tier"]["rules"]] == [
        "burst", "per-minute", "in-flight", proposal["rule_name"]]
    key = admin.post("/api/v1/keys", headers=AUTH, json={"owner": "tester", "tier": "free"}).json()["api_key"]
    enforcer = Enforcer(load_policy(POLICY_FILE), EnforcerSettings(
        redis_url=redis_url, api_key_secret=SECRET, redis_budget_ms=2000, shadow_headers=True))
    with TestClient(create_app(enforcer), client=("198.51.100.50", 50000)) as api:
        answers = [api.get("/v1/items", headers={"authorization": f"Bearer {key}"}) for _ in range(limit + 1)]
    assert [a.status_code for a in answers] == [200] * (limit + 1)  # a shadow denies nothing
    assert [a.headers.get("x-ratewarden-shadow") for a in answers[:limit]] == [None] * limit
    assert answers[limit].headers["x-ratewarden-shadow"].startswith(f'"{proposal["rule_name"]}"')
    [entry] = admin.get("/api/v1/audit", headers=AUTH, params={"action": "recommendation.stage"}).json()
    assert (entry["actor"], entry["target"]) == ("ops", "free")

    # what the enforcers then report confirms or refutes the estimate it was staged with
    [finding] = admin.get("/api/v1/recommendations/staged", headers=AUTH).json()
    expected = replay(seeded, "free", limit, {ABUSER})
    assert {k: finding["estimate"][k] for k in expected} == expected and entry["after"]["estimate"]["requests"] > 0
    assert (finding["rule"], finding["still_shadow"], finding["observed"]["would_deny_requests"]) == (
        proposal["rule_name"], True, 0)
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    reported = [  # as the stream writes the enforcers' shadow denials (the paid row is another tier's)
        [now, "k:free03", "free", "GET /v1/items", "GET", "2xx", "allowed", proposal["rule_name"], 3, 3, 3.0, 1.0],
        [now, "k:free07", "free", "GET /v1/items", "GET", "2xx", "allowed", proposal["rule_name"], 4, 4, 4.0, 1.0],
        [now, "k:paid01", "paid", "GET /v1/items", "GET", "2xx", "allowed", proposal["rule_name"], 9, 9, 9.0, 1.0]]
    clickhouse.insert(f"{DB}.usage_minute", reported, column_names=[*COLUMNS[:7], "shadow_rule", *COLUMNS[7:]])
    seeded += reported  # the usage later tests replay
    [finding] = admin.get("/api/v1/recommendations/staged", headers=AUTH).json()
    assert (finding["observed"]["would_deny_requests"], finding["observed"]["would_deny_clients"]) == (7, 2)


def test_the_cli_prints_the_same_proposals(clickhouse: Any, admin: TestClient, redis_url: str,
                                           seeded: list[list[Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    [[path]] = clickhouse.query("SELECT value FROM system.server_settings WHERE name = 'path'").result_rows
    monkeypatch.setenv("RATEWARDEN_CLICKHOUSE_URL", f"chdb://{path}")  # this process's engine, as chDB requires
    monkeypatch.setenv("RATEWARDEN_CLICKHOUSE_DATABASE", DB)
    monkeypatch.setenv("RATEWARDEN_REDIS_URL", redis_url)
    monkeypatch.setenv("RATEWARDEN_POLICY_FILE", str(POLICY_FILE))
    result = CliRunner().invoke(cli, ["recommend", "--range", "24h", "--percentile", "90", "--headroom", "1.2",
                                      "--json", "--stage", "--tier", "paid"])
    assert result.exit_code == 0, result.output
    printed, _, staged = result.output.rpartition("}")
    from_cli = json.loads(printed + "}")["proposals"]
    api = admin.get("/api/v1/recommendations", headers=AUTH,
                    params={"range": "24h", "percentile": 90, "headroom": 1.2, "tier": "paid"}).json()["proposals"]
    assert from_cli == api and len(api) == 1
    assert f"staged {api[0]['rule_name']} on tier paid" in staged
    rules = admin.get("/api/v1/tiers/paid", headers=AUTH).json()["tier"]["rules"]
    assert rules[-1]["name"] == api[0]["rule_name"] and rules[-1]["shadow"] is True
    assert CliRunner().invoke(cli, ["recommend", "--range", "2h"]).exit_code == 2


def test_the_cli_asks_a_running_admin_api_when_given_its_url(admin_app: FastAPI, admin: TestClient,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """With embedded chDB the stream worker holds ClickHouse: the CLI goes through its admin API."""
    import threading

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(admin_app, host="127.0.0.1", port=port, log_config=None, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 10.0, "the admin API listening")
        monkeypatch.setenv("RATEWARDEN_ADMIN_TOKEN", TOKEN)
        monkeypatch.setenv("RATEWARDEN_CLICKHOUSE_URL", "http://127.0.0.1:9")  # nothing there: never read
        args = ["recommend", "--range", "24h", "--tier", "free", "--json", "--stage",
                "--admin-url", f"http://127.0.0.1:{port}"]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        printed, _, staged = result.output.rpartition("}")
        [proposal] = json.loads(printed + "}")["proposals"]
        api = admin.get("/api/v1/recommendations", headers=AUTH, params={"range": "24h", "tier": "free"}).json()
        assert [proposal] == api["proposals"] and f"staged {proposal['rule_name']} on tier free" in staged
        [entry] = admin.get("/api/v1/audit", headers=AUTH, params={"action": "recommendation.stage"}).json()
        assert entry["actor"].startswith("cli:") and entry["principal"] == "admin-token"
        monkeypatch.setenv("RATEWARDEN_ADMIN_TOKEN", "not-the-admin-token-0123")
        refused = CliRunner().invoke(cli, args)
        assert refused.exit_code == 1 and "HTTP 401" in refused.output
    finally:
        server.should_exit = True
        thread.join(10)
