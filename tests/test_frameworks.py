"""One behaviour suite for every framework ratewarden fronts (FastAPI, Starlette, Litestar in its own
middleware form and wrapped from outside, Flask, Django/DRF): the same policy, the same answers,
headers, problem+json bodies, route rules, route templates and events, on a real Valkey."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from ratewarden.enforcer.routes import UNMATCHED_ROUTE

from . import framework_apps
from .framework_apps import Driver

FRAMEWORKS = ["fastapi", "starlette", "litestar", "litestar_wrapped", "flask", "django"]
IP = "198.51.100.40"


def _build(request: pytest.FixtureRequest, redis_url: str, tmp_path: Path,
           policy: dict[str, Any]) -> contextlib.AbstractContextManager[Driver]:
    builder = getattr(framework_apps, f"{request.param}_app")
    extra: dict[str, Any] = {}
    if request.param == "django":
        extra = {"settings": request.getfixturevalue("settings"),
                 "monkeypatch": request.getfixturevalue("monkeypatch")}
    return builder(redis_url, IP, tmp_path, policy, **extra)  # type: ignore[no-any-return]


@pytest.fixture(params=FRAMEWORKS)
def app(request: pytest.FixtureRequest, redis_sync: redis.Redis, redis_url: str, tmp_path: Path) -> Iterator[Driver]:
    with _build(request, redis_url, tmp_path, framework_apps.POLICY) as driver:
        yield driver


@pytest.fixture(params=FRAMEWORKS)
def app_without_redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Driver]:
    """The app on a tier that fails closed, with nothing listening where its Redis should be."""
    policy = {**framework_apps.POLICY, "tiers": {**framework_apps.POLICY["tiers"], "anonymous": {
        **framework_apps.POLICY["tiers"]["anonymous"], "fail_mode": "closed"}}}
    with _build(request, "redis://127.0.0.1:1/0", tmp_path, policy) as driver:
        yield driver


def test_allowed_requests_carry_one_header_set(app: Driver) -> None:
    response = app.get("/items/7")
    assert response.status == 200 and response.json() == {"id": 7}
    assert response.headers["ratelimit-policy"] == '"per-ip";q=5;w=3600'
    assert response.headers["ratelimit"].startswith('"per-ip";r=4;t=')
    assert response.headers["x-ratelimit-limit"] == "5" and response.headers["x-ratelimit-remaining"] == "4"
    assert "retry-after" not in response.headers


def test_denials_are_problem_json_with_retry_after(app: Driver) -> None:
    statuses = [app.get(f"/items/{i}").status for i in range(5)]
    denied = app.get("/items/99")
    assert statuses == [200] * 5
    assert denied.status == 429
    assert denied.headers["content-type"] == "application/problem+json"
    assert 1 <= int(denied.headers["retry-after"]) <= 3600
    assert denied.headers["ratelimit"].startswith('"per-ip";r=0;t=')
    body = denied.json()
    assert body["type"] == "urn:ratewarden:problem:rate-limited" and body["status"] == 429
    assert body["policy"] == "per-ip" and body["kind"] == "rate" and body["tier"] == "anonymous"
    assert body["route"] == "GET /items/{item_id}"  # the template, never the raw path
    assert body["retry_after"] == int(denied.headers["retry-after"])


def test_a_route_rule_written_the_frameworks_way_joins_the_policys(app: Driver) -> None:
    first = app.get("/limited")
    assert first.status == 200
    assert first.headers["ratelimit-policy"] == '"per-ip";q=5;w=3600, "2-per-1h";q=2;w=3600'
    assert first.headers["ratelimit"].startswith('"2-per-1h";r=1;t=')  # the rule closest to exhaustion
    assert app.get("/limited").status == 200
    denied = app.get("/limited")
    assert denied.status == 429 and denied.json()["policy"] == "2-per-1h"
    assert denied.json()["route"] == "GET /limited"
    assert app.get("/items/1").headers["x-ratelimit-remaining"] == "2"  # the route rule stays on its route


def test_exempt_routes_have_no_headers_and_no_event(app: Driver) -> None:
    responses = [app.get("/healthz") for _ in range(7)]
    assert [r.status for r in responses] == [200] * 7
    assert not any("ratelimit" in r.headers or "x-ratelimit-limit" in r.headers for r in responses)
    assert app.publisher.events == []


def test_one_event_per_request_names_the_route_template(app: Driver) -> None:
    app.get("/items/7")
    app.get("/limited")
    [item, limited] = app.publisher.events
    assert (item.method, item.route, item.path, item.status) == ("GET", "GET /items/{item_id}", "/items/7", 200)
    assert item.ip == IP and item.client_id == f"ip:{IP}" and item.tier == "anonymous"
    assert item.allowed and item.rule == "per-ip" and item.remaining == 4 and item.latency_ms >= 0
    assert (limited.route, limited.rule, limited.remaining) == ("GET /limited", "2-per-1h", 1)


def test_requests_no_route_matches_are_one_route(app: Driver) -> None:
    responses = [app.get(path) for path in ("/no/such/route", "/another/unknown")]
    assert [r.status for r in responses] == [404, 404]
    if not app.sees_unrouted:  # Litestar answers them before any middleware of its own runs
        assert app.publisher.events == [] and "ratelimit" not in responses[0].headers
        return
    assert responses[1].headers["x-ratelimit-remaining"] == "3"  # scanners are counted too
    assert [e.route for e in app.publisher.events] == [UNMATCHED_ROUTE, UNMATCHED_ROUTE]
    assert [e.status for e in app.publisher.events] == [404, 404]


def test_a_tier_that_fails_closed_answers_503_problem_json_while_redis_is_away(app_without_redis: Driver) -> None:
    response = app_without_redis.get("/items/7")
    assert response.status == 503
    assert response.headers["content-type"] == "application/problem+json" and "retry-after" in response.headers
    body = response.json()
    assert body["type"] == "urn:ratewarden:problem:limiter-unavailable" and body["status"] == 503
    assert body["route"] == "GET /items/{item_id}"
    assert app_without_redis.get("/healthz").status == 200  # exempt routes need no Redis
