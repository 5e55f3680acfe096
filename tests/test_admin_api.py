"""The admin API: a token everywhere but health, changes that running enforcers honour within a
second, 422 (never 500) on bad input, and a property-based run over its OpenAPI document."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ratewarden.analytics.admin import AdminSettings, create_admin_app
from ratewarden.analytics.migrations import migrate
from ratewarden.enforcer import Enforcer, EnforcerSettings, load_policy
from ratewarden.examples.demo_fastapi.app import POLICY_FILE, create_app
from ratewarden.stream.simulate import events, scenario
from ratewarden.stream.sink import UsageSink

from .admin_support import server_errors
from .helpers import wait_until

TOKEN = "admin-token-for-tests-0123456789"
SECRET = "test-secret-0123456789abcdef"
DB = "rw_admin"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def admin_app(clickhouse: Any, redis_url: str) -> FastAPI:
    migrate(clickhouse, db=DB)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    sink = UsageSink(clickhouse, "requests", database=DB)
    sink.assign([0])
    for offset, event in enumerate(events(scenario(legit=10, per_abuse=1), 3, int(start.timestamp()) * 1_000_000)):
        if event.client_id == "k:legit0001" and event.allowed:
            event = msgspec.structs.replace(event, shadow_denied="strict")
        sink.add(0, offset, event)
    sink.flush()
    return create_admin_app(AdminSettings(admin_token=TOKEN, api_key_secret=SECRET, redis_url=redis_url,
                                          clickhouse_database=DB, policy_file=str(POLICY_FILE)), clickhouse)


def demo(redis_url: str, ip: str) -> TestClient:
    enforcer = Enforcer(load_policy(POLICY_FILE), EnforcerSettings(redis_url=redis_url, api_key_secret=SECRET,
                                                                   redis_budget_ms=2000))
    return TestClient(create_app(enforcer), client=(ip, 50000))


def test_every_route_but_health_needs_the_token(admin: TestClient, admin_app: FastAPI) -> None:
    assert admin.get("/healthz").status_code == 200
    checked = 0
    for path, methods in admin_app.openapi()["paths"].items():
        if path in ("/healthz", "/metrics"):  # /metrics: open by default (see the next test)
            continue
        concrete = path.replace("{client_id}", "ip:1.2.3.4").replace("{name}", "free").replace("{key_id}", "key_ab")
        for method in methods:
            for headers in ({}, {"authorization": "Bearer wrong-token"}, {"authorization": TOKEN}):
                response = admin.request(method.upper(), concrete, headers=headers)
                assert response.status_code == 401, (method, path, headers, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
            checked += 1
    assert checked >= 15


def test_metrics_open_by_default_behind_the_token_or_off(admin: TestClient, clickhouse: Any, redis_url: str) -> None:
    """Prometheus scrapes without a token by default: the page names no client, no key, no secret."""
    page = admin.get("/metrics")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/plain")
    assert "ratewarden_decisions_total" in page.text and "process_cpu_seconds_total" in page.text
    assert TOKEN not in page.text and SECRET not in page.text and "k:legit" not in page.text
    for mode, statuses in (("token", (401, 200)), ("off", (404, 404))):
        app = create_admin_app(AdminSettings(admin_token=TOKEN, redis_url=redis_url, clickhouse_database=DB,
                                             admin_metrics=mode), clickhouse)
        with TestClient(app) as client:
            assert (client.get("/metrics").status_code, client.get("/metrics", headers=AUTH).status_code) == statuses


def test_usage_through_the_api(admin: TestClient) -> None:
    rows = admin.get("/api/v1/usage", headers=AUTH).json()
    assert sum(r["requests"] for r in rows) > 1000
    top = admin.get("/api/v1/usage/top", params={"limit": 3}, headers=AUTH).json()
    assert len(top) == 3 and top[0]["requests"] >= top[1]["requests"] >= top[2]["requests"]
    csv = admin.get("/api/v1/usage/export.csv", headers=AUTH,
                    params={"start": str(dt.date.today() - dt.timedelta(days=1)),
                            "end": str(dt.date.today() + dt.timedelta(days=2))})
    assert csv.headers["content-type"].startswith("text/csv") and csv.text.startswith("day,client_id,tier")
    assert admin.get("/api/v1/usage/quota/k:legit0001", headers=AUTH).json()["day_used"] > 0
    assert {t for t in admin.get("/api/v1/tiers", headers=AUTH).json()["tiers"]} >= {"free", "paid", "trusted"}
    [shadow] = admin.get("/api/v1/shadow", headers=AUTH).json()
    assert shadow["rule"] == "strict" and shadow["would_deny"] > 0
    assert shadow["top_clients"] == [{"client_id": "k:legit0001", "would_deny": shadow["would_deny"]}]


def test_an_override_made_through_the_api_is_honoured_within_a_second(admin: TestClient, redis_url: str) -> None:
    ip = "203.0.113.61"
    with demo(redis_url, ip) as api:
        assert api.get("/v1/items").status_code == 200
        response = admin.put(f"/api/v1/overrides/ip:{ip}", headers=AUTH,
                             json={"client_id": f"ip:{ip}", "block": True, "reason": "console test"})
        assert response.status_code == 200, response.text
        took = wait_until(lambda: api.get("/v1/items").status_code == 429, 1.0, "block honoured")
        assert [o["client_id"] for o in admin.get("/api/v1/overrides", headers=AUTH).json()] == [f"ip:{ip}"]
        assert admin.delete(f"/api/v1/overrides/ip:{ip}", headers=AUTH).status_code == 204
        wait_until(lambda: api.get("/v1/items").status_code == 200, 1.0, "block cleared")
    print(f"\noverride honoured after {took:.3f} s")


def test_an_ipv6_client_is_reachable_by_its_id(admin: TestClient) -> None:
    """IPv6 callers are grouped by prefix, so their ids hold a '/': every route taking a client id takes it."""
    client_id = "ip:2001:db8::/64"
    quoted = client_id.replace("/", "%2F")
    response = admin.put(f"/api/v1/overrides/{quoted}", headers=AUTH,
                         json={"client_id": client_id, "block": True, "reason": "ipv6 test"})
    assert response.status_code == 200, response.text
    assert [o["client_id"] for o in admin.get("/api/v1/overrides", headers=AUTH).json()] == [client_id]
    assert admin.get(f"/api/v1/clients/{quoted}", headers=AUTH).status_code == 200
    assert admin.get(f"/api/v1/usage/quota/{quoted}", headers=AUTH).status_code == 200
    assert admin.delete(f"/api/v1/overrides/{quoted}", headers=AUTH).status_code == 204
    assert admin.get("/api/v1/overrides", headers=AUTH).json() == []


def test_a_key_issued_then_revoked_through_the_api(admin: TestClient, redis_url: str) -> None:
    created = admin.post("/api/v1/keys", headers=AUTH, json={"owner": "acme", "tier": "paid"})
    assert created.status_code == 201
    api_key, record = created.json()["api_key"], created.json()["record"]
    listed = admin.get("/api/v1/keys", headers=AUTH).json()
    assert [(k["id"], k["owner"], k["tier"], k["prefix"]) for k in listed] == [
        (record["id"], "acme", "paid", api_key[:7])]
    assert api_key not in str(listed)
    with demo(redis_url, "198.51.100.40") as api:
        as_key = lambda: api.get("/v1/items", headers={"authorization": f"Bearer {api_key}"})  # noqa: E731
        assert as_key().headers["ratelimit-policy"].startswith('"burst"')  # the paid tier's rules
        assert admin.delete(f"/api/v1/keys/{record['id']}", headers=AUTH).status_code == 204
        took = wait_until(lambda: as_key().headers["ratelimit-policy"].startswith('"per-ip"'), 1.0,
                          "revocation honoured")
    print(f"\nrevoked key refused after {took:.3f} s")


@pytest.mark.parametrize("method, path, body, field", [
    ("put", "/api/v1/overrides/ip:1.2.3.4", {"client_id": "ip:1.2.3.4", "block": True, "allow": True}, "body"),
    ("put", "/api/v1/overrides/ip:1.2.3.4", {"client_id": "ip:1.2.3.4", "expires_at": "soon"}, "expires_at"),
    ("put", "/api/v1/overrides/ip:1.2.3.4", {"client_id": "ip:9.9.9.9"}, "client_id"),
    ("put", "/api/v1/overrides/nobody", {"client_id": "nobody"}, "client_id"),
    ("put", "/api/v1/tiers/free", {"rules": [{"name": "r", "limit": -1, "period": "1m"}]}, "limit"),
    ("put", "/api/v1/tiers/free", {"rules": [{"name": "r", "limit": 5, "period": "often"}]}, "period"),
    ("post", "/api/v1/keys", {"owner": ""}, "owner"),
    ("get", "/api/v1/usage?step=week", None, "step"),
    ("get", "/api/v1/usage?start=yesterday", None, "start"),
    ("get", "/api/v1/usage/top?limit=0", None, "limit"),
    ("get", "/api/v1/usage/quota/k:x?anchor_day=32", None, "anchor_day"),
])
def test_malformed_input_is_a_422_naming_the_field(admin: TestClient, method: str, path: str, body: Any,
                                                    field: str) -> None:
    response = admin.request(method.upper(), path, headers=AUTH, json=body)
    assert response.status_code == 422, response.text
    assert field in str([error["loc"] for error in response.json()["detail"]]), response.json()


def test_a_property_based_run_over_the_openapi_document_finds_no_500(admin: TestClient, admin_app: FastAPI) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", admin_app)
    failures, seen = server_errors(admin, schema, AUTH, max_examples=150)
    assert failures == []
    assert len(seen) >= 10, seen  # the run reached most operations


def test_the_console_is_a_static_page_and_its_data_needs_the_token(admin: TestClient) -> None:
    page = admin.get("/console")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Admin token" in page.text and "default-src 'self'" in page.headers["content-security-policy"]
    assert "k:legit" not in page.text  # no data without the token
    assert admin.get("/api/v1/usage/tiers").status_code == 401
    rates = admin.get("/api/v1/usage/tiers", headers=AUTH).json()
    assert {r["tier"] for r in rates} == {"free", "paid", "trusted"} and all(r["requests"] > 0 for r in rates)
