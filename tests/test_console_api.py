"""The admin API behind the console (issue 18): plans applied at run time (shadow, then enforcing),
keys rotated with a grace period and revoked, penalties cleared, every change in the audit log,
per-client and per-endpoint views, a token on every route and no 500 from a property-based run."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis
import schemathesis
import yaml
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ratewarden.analytics.admin import AdminSettings, create_admin_app
from ratewarden.analytics.migrations import migrate
from ratewarden.analytics.overrides_api import PENALTY_SOURCE
from ratewarden.analytics.ranges import window_of
from ratewarden.cli import app as cli
from ratewarden.enforcer import Enforcer, EnforcerSettings, load_policy
from ratewarden.enforcer.events import RequestEvent
from ratewarden.enforcer.loader import PolicyError, policy_from_mapping
from ratewarden.enforcer.overrides import Override, OverrideStore
from ratewarden.examples.demo_fastapi.app import POLICY_FILE, create_app
from ratewarden.stream.penalties import PENALTY_SOURCE_PREFIX
from ratewarden.stream.simulate import events, scenario
from ratewarden.stream.sink import UsageSink

from .admin_support import server_errors
from .helpers import wait_until

TOKEN = "admin-token-for-console-0123456789"
SECRET = "console-secret-0123456789abcdef"
DB = "rw_console"
AUTH = {"authorization": f"Bearer {TOKEN}"}
ALICE = {**AUTH, "x-ratewarden-actor": "alice@example.com"}
NEW_PATHS = {"/api/v1/tiers", "/api/v1/tiers/{name}", "/api/v1/tiers/{name}/mode", "/api/v1/keys",
             "/api/v1/keys/{key_id}", "/api/v1/keys/{key_id}/rotate", "/api/v1/overrides",
             "/api/v1/overrides/{client_id:path}", "/api/v1/overrides/clear-penalties", "/api/v1/audit",
             "/api/v1/clients/{client_id:path}", "/api/v1/endpoints/detail", "/api/v1/recommendations",
             "/api/v1/recommendations/stage", "/api/v1/recommendations/staged"}


def seeded_events(start: dt.datetime) -> list[RequestEvent]:
    """Three minutes of simulated traffic; every other denial by a quota rather than a rate rule."""
    seeded = []
    for i, event in enumerate(events(scenario(legit=10, per_abuse=1), 3, int(start.timestamp()) * 1_000_000)):
        if not event.allowed and i % 2:
            event = msgspec.structs.replace(event, rule="daily", kind="quota")
        seeded.append(event)
    return seeded


@pytest.fixture(scope="module")
def seeded(clickhouse: Any) -> list[RequestEvent]:
    migrate(clickhouse, db=DB)
    start = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) - dt.timedelta(minutes=10)
    sink = UsageSink(clickhouse, "requests", database=DB)
    sink.assign([0])
    found = seeded_events(start)
    for offset, event in enumerate(found):
        sink.add(0, offset, event)
    sink.flush()
    seen = start + dt.timedelta(minutes=1)
    clickhouse.insert(f"{DB}.alerts", [["retry|k:legit0001", "retry_storm", "medium", "k:legit0001", "free", seen,
                                        seen, seen, 2, '{"retries": 40}', "throttle", 1]],
                      column_names=["dedup_key", "alert_type", "severity", "client_id", "tier", "window_start",
                                    "first_seen", "last_seen", "occurrences", "evidence", "suggested_action",
                                    "version"])
    clickhouse.insert(f"{DB}.penalties", [["p1", "k:legit0001", "throttle", "free", "retry_storm", "retries", seen,
                                           seen + dt.timedelta(minutes=15)]],
                      column_names=["penalty_id", "client_id", "action", "tier", "detector", "reason", "created_at",
                                    "expires_at"])
    return found


@pytest.fixture(scope="module")
def admin_app(clickhouse: Any, redis_url: str, seeded: list[RequestEvent]) -> FastAPI:
    return create_admin_app(AdminSettings(admin_token=TOKEN, api_key_secret=SECRET, redis_url=redis_url,
                                          clickhouse_database=DB, policy_file=str(POLICY_FILE),
                                          key_rotation_grace_s=3600), clickhouse)


def demo(redis_url: str, ip: str) -> TestClient:
    """The demo API on a real enforcer (Valkey), reporting shadow denials in a header."""
    enforcer = Enforcer(load_policy(POLICY_FILE), EnforcerSettings(
        redis_url=redis_url, api_key_secret=SECRET, redis_budget_ms=2000, shadow_headers=True))
    return TestClient(create_app(enforcer), client=(ip, 50000))


def audit(admin: TestClient, **params: str) -> list[dict[str, Any]]:
    response = admin.get("/api/v1/audit", headers=AUTH, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def app_routes(app: FastAPI) -> list[Any]:
    """Every route of ``app`` with its full path and methods, in the schema or not (FastAPI >= 0.165
    keeps an included router whole: its routes are its effective route contexts)."""
    found = []
    for route in app.routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "effective_route_contexts"):
            found += list(route.effective_route_contexts())
    return found


def test_every_api_route_needs_the_token_whatever_the_actor_header(admin: TestClient, admin_app: FastAPI) -> None:
    routes = [r for r in app_routes(admin_app) if r.path.startswith("/api/")]
    assert NEW_PATHS <= {r.path for r in routes}
    checked = 0
    for route in routes:
        path = (route.path.replace("{client_id:path}", "ip:2001:db8::/64").replace("{client_id}", "k:key_ab")
                .replace("{name}", "free")
                .replace("{key_id}", "key_ab"))
        for method in route.methods:
            for headers in ({}, {"x-ratewarden-actor": "mallory"}, {"authorization": "Bearer " + TOKEN[:-1]}):
                response = admin.request(method, path, headers=headers, json={})
                assert response.status_code == 401, (method, path, headers, response.text)
            checked += 1
    assert checked >= len(NEW_PATHS) + 8


def test_a_tier_created_in_shadow_then_enforced_through_the_api(admin: TestClient, redis_url: str) -> None:
    gold = {"rules": [{"name": "gold-per-minute", "limit": 3, "period": "1m", "scope": ["key"]}],
            "quotas": {"daily": 1000}, "shadow": True}
    created = admin.put("/api/v1/tiers/gold", headers=ALICE, json=gold)
    assert created.status_code == 200, created.text
    assert (created.json()["origin"], created.json()["shadow"]) == ("runtime", True)
    key = admin.post("/api/v1/keys", headers=ALICE, json={"owner": "acme", "tier": "gold", "note": "pilot"}).json()
    bearer = {"authorization": f"Bearer {key['api_key']}"}
    with demo(redis_url, "198.51.100.41") as api:
        # shadow: the 4th request in the minute is admitted and reported
        answers = [api.get("/v1/items", headers=bearer) for _ in range(4)]
        assert [a.status_code for a in answers] == [200] * 4
        assert answers[3].headers["x-ratewarden-shadow"].startswith('"gold-per-minute"')
        switched = admin.post("/api/v1/tiers/gold/mode", headers=ALICE, json={"shadow": False})
        assert switched.status_code == 200 and switched.json()["shadow"] is False
        took = wait_until(lambda: api.get("/v1/items", headers=bearer).status_code == 429, 1.0, "tier enforced")
    print(f"\ntier switched to enforcing, honoured after {took:.3f} s")
    entries = audit(admin, target="gold")
    assert [(e["action"], e["actor"]) for e in entries] == [("tier.enforce", "alice@example.com"),
                                                            ("tier.put", "alice@example.com")]
    assert entries[0]["before"]["shadow"] is True and entries[0]["after"]["shadow"] is False
    assert entries[1]["before"] is None and entries[1]["after"]["rules"][0]["limit"] == 3


def test_a_new_tier_is_enforced_within_a_second(admin: TestClient, redis_url: str) -> None:
    key = admin.post("/api/v1/keys", headers=AUTH, json={"owner": "beta"}).json()  # the default tier (free)
    bearer = {"authorization": f"Bearer {key['api_key']}"}
    with demo(redis_url, "198.51.100.42") as api:
        assert api.get("/v1/items", headers=bearer).headers["ratelimit-policy"].startswith('"burst"')
        assert admin.put("/api/v1/tiers/free", headers=AUTH, json={
            "rules": [{"name": "tight", "limit": 1, "period": "1m", "scope": ["key"]}]}).status_code == 200
        took = wait_until(lambda: api.get("/v1/items", headers=bearer).status_code == 429, 1.0, "new tier enforced")
        assert api.get("/v1/items", headers=bearer).headers["ratelimit-policy"].startswith('"tight"')
    print(f"\nrun-time tier enforced after {took:.3f} s")
    [entry] = audit(admin, target="free")
    assert entry["action"] == "tier.put" and entry["actor"] == "admin-token"
    assert [r["name"] for r in entry["before"]["rules"]] == ["burst", "per-minute", "in-flight"]
    assert admin.delete("/api/v1/tiers/free", headers=AUTH).status_code == 204
    assert admin.get("/api/v1/tiers/free", headers=AUTH).json()["origin"] == "file"


def test_a_rotated_key_works_beside_the_new_one_for_the_grace_period_only(admin: TestClient, redis_url: str) -> None:
    created = admin.post("/api/v1/keys", headers=ALICE, json={"owner": "acme", "tier": "paid"}).json()
    key_id, old = created["record"]["id"], created["api_key"]
    rotated = admin.post(f"/api/v1/keys/{key_id}/rotate", headers=ALICE, json={"grace_s": 1.5})
    assert rotated.status_code == 200, rotated.text
    new, record = rotated.json()["api_key"], rotated.json()["record"]
    assert new != old and record["id"] == key_id and record["prefix"] == new[:7]
    assert record["previous"]["prefix"] == old[:7]
    rotated_at = time.time()
    with demo(redis_url, "198.51.100.43") as api:
        def tier_of(api_key: str) -> str:
            policy = api.get("/v1/items", headers={"authorization": f"Bearer {api_key}"}).headers["ratelimit-policy"]
            return policy.split(";")[0].strip('"')

        assert (tier_of(old), tier_of(new)) == ("burst", "burst")  # the paid tier's rules, the same client
        assert time.time() - rotated_at < 1.5, "the machine was too slow to see the grace period"
        took = wait_until(lambda: tier_of(old) == "per-ip", 3.0, "old key refused after the grace period")
        assert tier_of(new) == "burst"
    print(f"\nold key refused {took:.3f} s after the check, grace 1.5 s")
    listed = {k["id"]: k for k in admin.get("/api/v1/keys", headers=AUTH).json()}
    assert listed[key_id]["prefix"] == new[:7] and listed[key_id]["previous"] is None
    assert old not in str(listed) and new not in str(listed)


def test_the_default_grace_period_is_the_setting(admin: TestClient) -> None:
    created = admin.post("/api/v1/keys", headers=AUTH, json={"owner": "acme"}).json()
    key_id = created["record"]["id"]
    record = admin.post(f"/api/v1/keys/{key_id}/rotate", headers=AUTH).json()["record"]
    assert record["previous"]["expires_at"] == pytest.approx(record["created_at"] + 3600, abs=1)
    [listed] = admin.get("/api/v1/keys", headers=AUTH).json()
    assert listed["previous"] == record["previous"] and listed["previous"]["prefix"] == created["api_key"][:7]


def test_revoking_a_rotated_key_refuses_both_secrets_within_a_second(admin: TestClient, redis_url: str) -> None:
    created = admin.post("/api/v1/keys", headers=AUTH, json={"owner": "acme", "tier": "paid"}).json()
    key_id, old = created["record"]["id"], created["api_key"]
    new = admin.post(f"/api/v1/keys/{key_id}/rotate", headers=AUTH, json={"grace_s": 3600}).json()["api_key"]
    with demo(redis_url, "198.51.100.44") as api:
        def anonymous(api_key: str) -> bool:
            response = api.get("/v1/items", headers={"authorization": f"Bearer {api_key}"})
            return response.headers["ratelimit-policy"].startswith('"per-ip"')

        assert not anonymous(old) and not anonymous(new)  # both cached by the enforcer now
        assert admin.delete(f"/api/v1/keys/{key_id}", headers=ALICE).status_code == 204
        took = wait_until(lambda: anonymous(old) and anonymous(new), 1.0, "both secrets refused")
    print(f"\nrevoked (rotated) key refused after {took:.3f} s")
    assert admin.get(f"/api/v1/keys/{key_id}", headers=AUTH).json()["status"] == "revoked"
    assert admin.post(f"/api/v1/keys/{key_id}/rotate", headers=AUTH).status_code == 409
    assert [e["action"] for e in audit(admin, target=key_id)] == ["key.revoke", "key.rotate", "key.create"]


def test_rotating_again_ends_the_earlier_grace_and_grace_zero_ends_it_at_once(admin: TestClient,
                                                                               redis_url: str) -> None:
    created = admin.post("/api/v1/keys", headers=AUTH, json={"owner": "acme", "tier": "paid"}).json()
    key_id, first = created["record"]["id"], created["api_key"]
    rotate = lambda grace: admin.post(f"/api/v1/keys/{key_id}/rotate", headers=AUTH,  # noqa: E731
                                      json={"grace_s": grace}).json()["api_key"]
    second = rotate(3600)
    with demo(redis_url, "198.51.100.47") as api:
        def paid(api_key: str) -> bool:
            response = api.get("/v1/items", headers={"authorization": f"Bearer {api_key}"})
            return '"per-minute";q=3000;' in response.headers["ratelimit-policy"]

        assert paid(first) and paid(second)
        third = rotate(3600)  # at most two secrets: the first one stops now
        wait_until(lambda: not paid(first), 1.0, "the first secret refused")
        assert paid(second) and paid(third)
        fourth = rotate(0)  # no grace: the third stops now, and the second with it
        wait_until(lambda: not paid(third), 1.0, "the third secret refused")
        assert not paid(second) and paid(fourth)


def test_a_key_changed_and_every_key_change_audited(admin: TestClient, redis_url: str) -> None:
    created = admin.post("/api/v1/keys", headers=AUTH, json={"owner": "acme"}).json()
    key_id = created["record"]["id"]
    bearer = {"authorization": f"Bearer {created['api_key']}"}
    with demo(redis_url, "198.51.100.45") as api:
        policy = lambda: api.get("/v1/items", headers=bearer).headers["ratelimit-policy"]  # noqa: E731
        assert '"per-minute";q=300;' in policy()  # the free tier's
        changed = admin.patch(f"/api/v1/keys/{key_id}", headers=ALICE,
                              json={"tier": "paid", "owner": "acme corp", "note": "upgraded"})
        assert changed.status_code == 200, changed.text
        assert (changed.json()["tier"], changed.json()["owner"], changed.json()["note"]) == (
            "paid", "acme corp", "upgraded")
        wait_until(lambda: '"per-minute";q=3000;' in policy(), 1.0, "the key's new tier")
    [change, create] = audit(admin, target=key_id)
    assert (change["action"], change["actor"], change["before"]["tier"], change["after"]["tier"]) == (
        "key.change", "alice@example.com", None, "paid")
    assert create["action"] == "key.create" and created["api_key"] not in str(create)


@pytest.mark.parametrize("method, path, body, loc", [
    ("put", "/api/v1/tiers/gold", {"rules": [{"name": "r", "limit": 0, "period": "1m"}]},
     ["body", "rules", 0, "limit"]),
    ("put", "/api/v1/tiers/gold", {"quotas": {"daily": -5}}, ["body", "quotas", "daily"]),
    ("put", "/api/v1/tiers/gold", {"fail_mode": "sideways"}, ["body", "fail_mode"]),
    ("post", "/api/v1/keys", {"owner": "a", "tier": "platinum"}, ["body", "tier"]),
    ("post", "/api/v1/tiers/free/mode", {"shadow": "perhaps"}, ["body", "shadow"]),
    ("post", "/api/v1/recommendations/stage", {"tier": "free", "limit": 0}, ["body", "limit"]),
    ("get", "/api/v1/clients/k:x?range=2h", None, ["query", "range"]),
])
def test_a_bad_field_is_a_422_at_its_path(admin: TestClient, method: str, path: str, body: Any,
                                          loc: list[Any]) -> None:
    response = admin.request(method.upper(), path, headers=AUTH, json=body)
    assert response.status_code == 422, response.text
    assert loc in [error["loc"] for error in response.json()["detail"]], response.json()
    assert all(error["msg"] for error in response.json()["detail"])


CAPACITY_POLICY = """
anonymous_tier: anonymous
default_tier: free
tiers:
  anonymous: {}
  free: {}
capacity:
  - {name: items, endpoints: [GET /v1/items], limit: 10, period: 1d, algorithm: fixed_window,
     shares: {anonymous: 0.2, free: 0.5}}
"""


def test_a_tier_share_of_capacity_changed_at_run_time(clickhouse: Any, redis_url: str, redis_sync: redis.Redis,
                                                       tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(CAPACITY_POLICY)
    app = create_admin_app(AdminSettings(admin_token=TOKEN, redis_url=redis_url, clickhouse_database=DB,
                                         policy_file=str(policy_file)), clickhouse)
    enforcer = Enforcer(load_policy(policy_file), EnforcerSettings(redis_url=redis_url, redis_budget_ms=2000))
    with TestClient(app) as admin, TestClient(create_app(enforcer), client=("198.51.100.46", 50000)) as api:
        assert admin.get("/api/v1/tiers/anonymous", headers=AUTH).json()["capacity_shares"] == {"items": 0.2}
        assert [api.get("/v1/items").status_code for _ in range(3)] == [200, 200, 429]  # 0.2 of 10
        too_much = admin.put("/api/v1/tiers/anonymous", headers=AUTH, json={"capacity_shares": {"items": 0.6}})
        assert too_much.status_code == 422
        assert [e["loc"] for e in too_much.json()["detail"]] == [["body", "capacity_shares", "items"]]
        assert "sum to 1.1" in too_much.json()["detail"][0]["msg"]
        unknown = admin.put("/api/v1/tiers/anonymous", headers=AUTH, json={"capacity_shares": {"search": 0.1}})
        assert [e["loc"] for e in unknown.json()["detail"]] == [["body", "capacity_shares", "search"]]
        changed = admin.put("/api/v1/tiers/anonymous", headers=AUTH, json={"capacity_shares": {"items": 0.4}})
        assert changed.status_code == 200 and changed.json()["capacity_shares"] == {"items": 0.4}
        took = wait_until(lambda: api.get("/v1/items").status_code == 200, 1.0, "the larger share honoured")
        assert [api.get("/v1/items").status_code for _ in range(2)] == [200, 429]  # 4 of 10 in all
    print(f"\nrun-time capacity share honoured after {took:.3f} s")


def test_a_tier_own_capacity_shares_in_a_policy_file() -> None:
    mapping = yaml.safe_load(CAPACITY_POLICY)
    mapping["tiers"]["free"] = {"capacity_shares": {"items": 0.7}}
    assert policy_from_mapping(mapping).capacity[0].shares == {"anonymous": 0.2, "free": 0.7}
    mapping["tiers"]["anonymous"] = {"capacity_shares": {}}  # no share of any capacity: bounded by it alone
    assert policy_from_mapping(mapping).capacity[0].shares == {"free": 0.7}
    mapping["tiers"]["free"] = {"capacity_shares": {"items": 0.9, "search": 0.1}}
    with pytest.raises(PolicyError, match="unknown capacities \\['search'\\]"):
        policy_from_mapping(mapping)


def test_a_named_token_is_the_verified_principal_of_its_changes(admin: TestClient,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATEWARDEN_ADMIN_TOKEN", TOKEN)
    issued = CliRunner().invoke(cli, ["admin-token", "--ttl", "5m", "--name", "bob@ops"])
    assert issued.exit_code == 0, issued.output
    bob = {"authorization": f"Bearer {issued.output.strip()}"}
    assert admin.put("/api/v1/overrides/u:carol", headers=bob, json={"client_id": "u:carol", "block": True}
                     ).status_code == 200
    assert admin.delete("/api/v1/overrides/u:carol", headers={**bob, "x-ratewarden-actor": "dave"}).status_code == 204
    assert admin.put("/api/v1/overrides/u:carol", headers=ALICE, json={"client_id": "u:carol"}).status_code == 200
    assert [(e["actor"], e["principal"]) for e in audit(admin, target="u:carol")] == [
        ("alice@example.com", "admin-token"), ("dave", "bob@ops"), ("bob@ops", "bob@ops")]
    _, expiry, _, signature = issued.output.strip().split(".")
    forged = {"authorization": f"Bearer rwat.{expiry}.eve.{signature}"}
    assert admin.put("/api/v1/overrides/u:carol", headers=forged, json={"client_id": "u:carol"}).status_code == 401
    assert CliRunner().invoke(cli, ["admin-token", "--name", "has.dot"]).exit_code == 2
    superscript = {"authorization": "Bearer rwat.\u00b2.x".encode("latin-1")}  # a Unicode digit as the expiry
    assert admin.get("/api/v1/audit", headers=superscript).status_code == 401  # not a 500


def test_penalties_cleared_in_one_call_and_audited(admin: TestClient, redis_sync: redis.Redis) -> None:
    assert PENALTY_SOURCE == PENALTY_SOURCE_PREFIX  # the prefix the stream marks its penalties with
    store = OverrideStore(redis_sync)
    for client_id in ("ip:203.0.113.7", "k:key_abc"):
        store.set(Override(client_id=client_id, block=True, source=f"{PENALTY_SOURCE}enumeration",
                           expires_at=time.time() + 600))
    assert admin.put("/api/v1/overrides/u:ops", headers=AUTH,
                     json={"client_id": "u:ops", "allow": True}).status_code == 200
    cleared = admin.post("/api/v1/overrides/clear-penalties", headers=ALICE)
    assert cleared.json() == {"cleared": ["ip:203.0.113.7", "k:key_abc"]}
    assert [o["client_id"] for o in admin.get("/api/v1/overrides", headers=AUTH).json()] == ["u:ops"]
    actions = [(e["action"], e["target"]) for e in audit(admin)]
    assert sorted(actions[:2]) == [("penalty.clear", "ip:203.0.113.7"), ("penalty.clear", "k:key_abc")]
    assert actions[2] == ("override.put", "u:ops")


def test_the_audit_log_is_bounded_and_pages_back(admin_app: FastAPI, admin: TestClient,
                                                  redis_sync: redis.Redis) -> None:
    from ratewarden.analytics.audit import AUDIT_STREAM, AuditLog

    log = AuditLog(redis_sync, max_entries=100)
    for i in range(1000):
        log.record("bot", "tier.put", f"t{i}")
    assert 100 <= redis_sync.xlen(AUDIT_STREAM) < 300  # trimmed approximately, never unbounded
    first = audit(admin, limit="3")
    assert [e["target"] for e in first] == ["t999", "t998", "t997"]
    assert [e["target"] for e in audit(admin, limit="2", before=first[-1]["id"])] == ["t996", "t995"]


def test_a_client_and_an_endpoint_over_an_hour(admin: TestClient, seeded: list[RequestEvent]) -> None:
    client_id = "k:legit0001"
    view = admin.get(f"/api/v1/clients/{client_id}", headers=AUTH, params={"range": "1h"})
    assert view.status_code == 200, view.text
    body = view.json()
    start, end = window_of("1h")
    assert body["window"]["bucket_s"] == 60 and len(body["series"]) == 60
    mine = [e for e in seeded if e.client_id == client_id]
    by_minute = Counter(e.decided_at_us // 60_000_000 * 60 for e in mine)
    got = {int(dt.datetime.fromisoformat(p["t"]).timestamp()): p["requests"] for p in body["series"] if p["requests"]}
    assert got == dict(by_minute)
    statuses = Counter(f"{e.status // 100}xx" for e in mine)
    assert {c: sum(p["status_classes"][c] for p in body["series"]) for c in statuses} == dict(statuses)
    assert sum(p["max_latency_ms"] > 0 for p in body["series"]) == len(by_minute)
    assert body["tier"] == mine[0].tier and body["quota"]["day_used"] == sum(e.cost for e in mine if e.allowed)
    assert body["quota"]["day_limit"] == load_policy(POLICY_FILE).tiers[mine[0].tier].quotas.daily
    assert [(a["alert_type"], a["evidence"]) for a in body["alerts"]] == [("retry_storm", {"retries": 40})]
    day = dt.datetime.fromtimestamp(mine[0].decided_at_us / 1e6, dt.UTC).date()
    late = admin.get(f"/api/v1/clients/{client_id}", headers=AUTH,  # its last 6-hour bucket ends tomorrow
                     params={"range": "30d", "end": f"{day}T23:00:00Z"}).json()
    assert late["window"]["end"].startswith(str(day + dt.timedelta(days=1))) and len(late["series"]) == 120
    assert (late["quota"]["day"], late["quota"]["day_used"]) == (str(day), body["quota"]["day_used"])
    assert [(p["penalty_id"], p["action"]) for p in body["penalties"]] == [("p1", "throttle")]

    route = "GET /v1/items/{item_id}"  # the route the simulated retry storm was denied on
    detail = admin.get("/api/v1/endpoints/detail", headers=AUTH, params={"route": route, "range": "24h"}).json()
    assert detail["window"]["bucket_s"] == 900 and len(detail["series"]) == 96
    on_route = [e for e in seeded if e.route == route]
    denials: dict[tuple[str, str], int] = defaultdict(int)
    for e in on_route:
        if not e.allowed:
            denials[e.rule or "", e.kind or ""] += 1
    assert {(d["rule"], d["kind"]): d["requests"] for d in detail["denial_totals"]} == dict(denials)
    assert len(denials) == 2  # rate and quota denials, told apart
    assert sum(p["denied"] for p in detail["series"]) == sum(denials.values())
    top = Counter(e.client_id for e in on_route).most_common(1)[0]
    assert (detail["top_clients"][0]["client_id"], detail["top_clients"][0]["requests"]) == top


def test_a_property_based_run_over_the_new_endpoints_finds_no_500(admin: TestClient, admin_app: FastAPI) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", admin_app).include(
        path_regex=r"^/api/v1/(tiers|keys|overrides|audit|clients|endpoints/detail|recommendations)")
    failures, seen = server_errors(admin, schema, AUTH, max_examples=300)
    assert failures == []
    assert len(seen) >= 15, seen
