"""The front door's own forms: rate strings, FastAPI dependencies per route and per router,
sync and async resolvers, a tier from a JWT claim, and routes from the policy for bare apps."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Annotated, Any

import pytest
import redis
from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient

from ratewarden.enforcer import Decision, EnforcerSettings, PolicyError, SyncEnforcer, policy_from_mapping
from ratewarden.enforcer.asgi import RatewardenMiddleware
from ratewarden.enforcer.fastapi import RateLimit
from ratewarden.enforcer.rates import Rate, parse_rate, parse_rates
from ratewarden.enforcer.wsgi import RatewardenMiddleware as WSGIMiddleware

from .framework_apps import RecordingPublisher
from .helpers import command_counts, make_enforcer

TIERS: dict[str, Any] = {
    "anonymous": {"rules": ["100/hour"]},
    "free": {"rules": [{"rate": "50/hour", "name": "free-hourly", "scope": ["user"]}]},
    "gold": {"rules": [{"rate": "1000/hour", "name": "gold-hourly", "scope": ["user"]}]},
}
JWT_SECRET = b"test-only-jwt-secret"


# -- rate strings ---------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("10/minute", [Rate(10, 60)]),
    ("10 per minute", [Rate(10, 60)]),
    ("10/minute;100/hour", [Rate(10, 60), Rate(100, 3600)]),
    ("10 per minute, 100 per hour", [Rate(10, 60), Rate(100, 3600)]),
    ("5/15m", [Rate(5, 900)]),
    ("100/2 hours", [Rate(100, 7200)]),
    ("3/sec", [Rate(3, 1)]),
    ("1000/day", [Rate(1000, 86400)]),
    ("7 PER Seconds", [Rate(7, 1)]),
])
def test_rate_strings_in_the_limits_grammar(text: str, expected: list[Rate]) -> None:
    assert parse_rates(text) == expected


def test_rates_name_the_rules_they_make() -> None:
    assert [rate.name for rate in parse_rates("10/minute;100/hour;5/15m;1000/day;2/500ms")] == [
        "10-per-1m", "100-per-1h", "5-per-15m", "1000-per-1d", "2-per-500ms"]


@pytest.mark.parametrize(("text", "message"), [
    ("10/month", "no fixed length"),
    ("10/year", "no fixed length"),
    ("10/fortnight", "unknown period 'fortnight'"),
    ("ten/minute", "expected 'N/period'"),
    ("0/minute", "greater than zero"),
    ("10/minute;10 per minute", "written twice"),
    ("", "expected 'N/period'"),
])
def test_bad_rate_strings_say_what_is_accepted(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rates(text)
    if ";" not in text and text:
        with pytest.raises(ValueError, match=message):
            parse_rate(text)


def test_a_policy_takes_rate_strings_and_names_the_bad_one() -> None:
    policy = policy_from_mapping({"tiers": {"anonymous": {"rules": ["10/minute;100/hour"]}, "free": {
        "rules": [{"rate": "5/15m", "algorithm": "gcra", "scope": ["key"]}]}}})
    anonymous, free = policy.tiers["anonymous"].rules, policy.tiers["free"].rules
    assert [(r.name, r.limit, r.period) for r in anonymous] == [("10-per-1m", 10, 60), ("100-per-1h", 100, 3600)]
    assert (free[0].name, free[0].limit, free[0].period, free[0].algorithm) == ("5-per-15m", 5, 900, "gcra")
    with pytest.raises(PolicyError, match=r"tiers\.free\.rules\[0\]: invalid rate '100/month': 'month' has no fixed"):
        policy_from_mapping({"tiers": {"anonymous": {}, "free": {"rules": ["100/month"]}}})
    with pytest.raises(PolicyError, match="either rate or limit and period"):
        policy_from_mapping({"tiers": {"anonymous": {"rules": [{"rate": "1/s", "limit": 3}]}, "free": {}}})


# -- FastAPI dependencies ---------------------------------------------------------


def _reports_app(redis_url: str) -> FastAPI:
    app = FastAPI()
    app.add_middleware(RatewardenMiddleware, enforcer=make_enforcer(redis_url, {"tiers": TIERS}))
    reports = APIRouter(prefix="/reports", dependencies=[Depends(RateLimit("3/hour"))])

    @reports.get("/daily")
    async def daily(decision: Annotated[Decision, Depends(RateLimit("2 per hour"))]) -> dict[str, object]:
        return {"rule": decision.rule, "remaining": decision.remaining}

    @reports.get("/weekly")
    async def weekly() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/export", dependencies=[Depends(RateLimit("1/hour", cost=1))])
    async def export() -> dict[str, bool]:
        return {"ok": True}

    app.include_router(reports)
    return app


def test_depends_per_router_and_per_route_in_one_script_call(redis_sync: redis.Redis, redis_url: str) -> None:
    with TestClient(_reports_app(redis_url), client=("198.51.100.60", 5000)) as client:
        redis_sync.config_resetstat()
        first = client.get("/reports/daily")
        assert command_counts(redis_sync).get("evalsha") == 1  # the policy's, the router's and the route's rules
        assert first.headers["ratelimit-policy"] == '"100-per-1h";q=100;w=3600, "3-per-1h";q=3;w=3600, ' \
                                                    '"2-per-1h";q=2;w=3600'
        assert first.json() == {"rule": "2-per-1h", "remaining": 1}  # the dependency hands the decision over
        second, third = client.get("/reports/daily"), client.get("/reports/daily")
        assert second.status_code == 200 and third.status_code == 429
        assert third.json()["policy"] == "2-per-1h" and third.json()["route"] == "GET /reports/daily"
        # the router's rule counts per route: /weekly has its own 3
        assert [client.get("/reports/weekly").status_code for _ in range(4)] == [200, 200, 200, 429]
        # a route of the app itself, with its own dependency
        export = [client.get("/export") for _ in range(2)]
        assert [r.status_code for r in export] == [200, 429] and export[1].json()["policy"] == "1-per-1h"


def test_a_rate_limit_dependency_without_the_middleware_says_so() -> None:
    app = FastAPI()

    @app.get("/x", dependencies=[Depends(RateLimit("1/s"))])
    async def x() -> dict[str, bool]:
        return {"ok": True}

    with TestClient(app) as client, pytest.raises(RuntimeError, match="add RatewardenMiddleware"):
        client.get("/x")


# -- resolvers --------------------------------------------------------------------


def _jwt(claims: dict[str, object]) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = json.dumps({"alg": "HS256", "typ": "JWT"}).encode()
    signing_input = f"{b64(header)}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(JWT_SECRET, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def _claims(scope: dict[str, Any]) -> dict[str, Any]:
    """The verified claims of the request's ``Authorization: Bearer`` JWT (HS256), else {}."""
    header = dict(scope["headers"]).get(b"authorization", b"").decode()
    token = header.removeprefix("Bearer ")
    if token.count(".") != 2:
        return {}
    signing_input, _, signature = token.rpartition(".")
    expected = hmac.new(JWT_SECRET, signing_input.encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(base64.urlsafe_b64encode(expected).rstrip(b"=").decode(), signature):
        return {}
    payload = signing_input.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _resolver_app(redis_url: str, user_resolver: Any, tier_resolver: Any) -> TestClient:
    app = FastAPI()
    app.add_middleware(RatewardenMiddleware, enforcer=make_enforcer(redis_url, {"tiers": TIERS}),
                       user_resolver=user_resolver, tier_resolver=tier_resolver, publisher=RecordingPublisher())
    app.get("/me")(lambda: {"ok": True})
    return TestClient(app, client=("198.51.100.61", 5000))


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_user_and_tier_from_a_jwt_claim_with_sync_or_async_resolvers(redis_sync: redis.Redis, redis_url: str,
                                                                     kind: str) -> None:
    def user(scope: dict[str, Any]) -> str | None:
        return _claims(scope).get("sub")

    def tier(scope: dict[str, Any]) -> str | None:
        return _claims(scope).get("plan")

    async def async_user(scope: dict[str, Any]) -> str | None:
        return user(scope)

    async def async_tier(scope: dict[str, Any]) -> str | None:
        return tier(scope)

    resolvers = (user, tier) if kind == "sync" else (async_user, async_tier)
    with _resolver_app(redis_url, *resolvers) as client:
        gold = client.get("/me", headers={"Authorization": f"Bearer {_jwt({'sub': 'ada', 'plan': 'gold'})}"})
        free = client.get("/me", headers={"Authorization": f"Bearer {_jwt({'sub': 'bob'})}"})
        forged = _jwt({"sub": "eve", "plan": "gold"})[:-4] + "AAAA"
        anonymous = client.get("/me", headers={"Authorization": f"Bearer {forged}"})
        unknown = client.get("/me", headers={"Authorization": f"Bearer {_jwt({'sub': 'cy', 'plan': 'platinum'})}"})
    assert gold.status_code == 200 and gold.headers["ratelimit-policy"] == '"gold-hourly";q=1000;w=3600'
    assert free.headers["ratelimit-policy"] == '"free-hourly";q=50;w=3600'  # a user with no tier: default_tier
    assert anonymous.headers["ratelimit-policy"] == '"100-per-1h";q=100;w=3600'  # bad signature: no user
    # a tier the policy does not have is logged and ignored, never a 500
    assert unknown.status_code == 200 and unknown.headers["ratelimit-policy"] == '"free-hourly";q=50;w=3600'


def test_the_wsgi_middleware_refuses_coroutine_resolvers(redis_url: str) -> None:
    async def user(environ: dict[str, Any]) -> str:
        return "ada"

    enforcer = SyncEnforcer(policy_from_mapping({"tiers": TIERS}))
    with pytest.raises(TypeError, match="user_resolver is a coroutine function"):
        WSGIMiddleware(lambda environ, start: [], enforcer, user_resolver=user)
    enforcer.close()


# -- a bare ASGI app: routes from the policy ----------------------------------------


def test_a_bare_asgi_app_gets_its_routes_from_the_policys_patterns(redis_sync: redis.Redis, redis_url: str) -> None:
    async def bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    policy = {"tiers": TIERS, "endpoints": [{"route": "GET /things/{thing_id}", "rules": ["2/hour"]},
                                            {"route": "GET /static/*", "exempt": True}]}
    publisher = RecordingPublisher()
    app = RatewardenMiddleware(bare, make_enforcer(redis_url, policy), publisher=publisher)  # type: ignore[arg-type]
    with TestClient(app, client=("198.51.100.62", 5000)) as client:
        things = [client.get(f"/things/{i}") for i in range(3)]
        static = client.get("/static/app.js")
        other = client.get("/elsewhere")
    assert [r.status_code for r in things] == [200, 200, 429]
    assert things[2].json()["route"] == "GET /things/{thing_id}"
    assert "ratelimit" not in static.headers
    assert [e.route for e in publisher.events] == ["GET /things/{thing_id}"] * 3 + ["* (unmatched)"]
    assert other.headers["x-ratelimit-remaining"] == "97"  # two admitted things and this one; a denial takes none


# -- a key function under WSGI --------------------------------------------------------


def test_a_flask_key_function_reads_the_body_and_the_view_reads_it_again(redis_sync: redis.Redis,
                                                                         redis_url: str) -> None:
    from flask import Flask, request

    from ratewarden.enforcer.wsgi import limit

    def username(environ: dict[str, Any]) -> str | None:
        return json.loads(environ["wsgi.input"].read() or b"{}").get("username")

    app = Flask(__name__)

    @app.post("/login")
    @limit({"name": "login-user", "rate": "2/hour", "scope": ["custom"]}, key=username)
    def login() -> dict[str, str]:
        return {"hello": request.get_json()["username"]}

    enforcer = SyncEnforcer(policy_from_mapping({"tiers": TIERS}), EnforcerSettings(redis_url=redis_url))
    app.wsgi_app = WSGIMiddleware(app.wsgi_app, enforcer)  # type: ignore[method-assign]
    client = app.test_client()
    try:
        ada = [client.post("/login", json={"username": "ada"}) for _ in range(3)]
        bob = client.post("/login", json={"username": "bob"})
    finally:
        enforcer.close()
    assert [r.status_code for r in ada] == [200, 200, 429] and ada[0].get_json() == {"hello": "ada"}
    assert bob.status_code == 200 and bob.get_json() == {"hello": "bob"}  # counted per username


# -- a key function inside Litestar ------------------------------------------------------


def test_a_litestar_key_function_gets_litestars_request_and_the_body_stays_readable(redis_sync: redis.Redis,
                                                                                    redis_url: str) -> None:
    from litestar import Litestar, Request, post
    from litestar.middleware import DefineMiddleware
    from starlette.testclient import TestClient as AnyASGIClient

    from ratewarden.enforcer.asgi import limit

    async def username(request: Request) -> str | None:
        assert isinstance(request, Request)
        return (await request.json()).get("username")

    @post("/login")
    @limit({"name": "login-user", "rate": "2/hour", "scope": ["custom"]}, key=username)
    async def login(data: dict[str, str]) -> dict[str, str]:
        return {"hello": data["username"]}

    enforcer = make_enforcer(redis_url, {"tiers": TIERS})
    app = Litestar([login], middleware=[DefineMiddleware(RatewardenMiddleware, enforcer=enforcer)],
                   on_shutdown=[enforcer.aclose])
    with AnyASGIClient(app) as client:
        ada = [client.post("/login", json={"username": "ada"}) for _ in range(3)]
        bob = client.post("/login", json={"username": "bob"})
    assert [r.status_code for r in ada] == [201, 201, 429] and ada[0].json() == {"hello": "ada"}
    assert bob.status_code == 201 and bob.json() == {"hello": "bob"}


# -- the route vocabulary ----------------------------------------------------------------


@pytest.mark.parametrize(("template", "expected"), [
    ("/items/<int:item_id>", "/items/{item_id}"),  # Flask / Werkzeug
    ("items/<slug:name>/photos/<pk>", "/items/{name}/photos/{pk}"),  # Django's path()
    ("/items/{item_id:int}", "/items/{item_id}"),  # Starlette, Litestar
    ("/files/{path:path}", "/files/{path}"),
    ("/items/{item_id}", "/items/{item_id}"),
])
def test_framework_templates_in_the_policys_form(template: str, expected: str) -> None:
    from ratewarden.enforcer.routes import brace_template

    assert brace_template(template) == expected


def test_policy_routes_prefer_exact_templates_to_prefixes_and_honour_methods() -> None:
    from ratewarden.enforcer.routes import PolicyRoutes, route_label

    policy = policy_from_mapping({"tiers": TIERS, "endpoints": [
        {"route": "* /v1/*", "cost": 2}, {"route": "GET /v1/items/{item_id}", "cost": 3},
        {"route": "POST /v1/items", "cost": 4}]})
    routes = PolicyRoutes(policy)
    assert routes.template("GET", "/v1/items/7") == "/v1/items/{item_id}"
    assert routes.template("DELETE", "/v1/items/7") == "/v1/*"
    assert routes.template("GET", "/v1/items") == "/v1/*" and routes.template("POST", "/v1/items") == "/v1/items"
    assert routes.template("GET", "/v2/items/7") is None
    assert route_label("GET", None) == "* (unmatched)" and route_label("GET", "/x") == "GET /x"


def test_wsgi_resolvers_read_the_environ(redis_sync: redis.Redis, redis_url: str) -> None:
    from flask import Flask

    app = Flask(__name__)
    app.get("/me")(lambda: {"ok": True})
    enforcer = SyncEnforcer(policy_from_mapping({"tiers": TIERS}), EnforcerSettings(redis_url=redis_url))
    app.wsgi_app = WSGIMiddleware(app.wsgi_app, enforcer,  # type: ignore[method-assign]
                                  user_resolver=lambda environ: environ.get("HTTP_X_USER"),
                                  tier_resolver=lambda environ: environ.get("HTTP_X_PLAN"))
    client = app.test_client()
    try:
        gold = client.get("/me", headers={"X-User": "ada", "X-Plan": "gold"})
        free = client.get("/me", headers={"X-User": "bob"})
        anonymous = client.get("/me")
    finally:
        enforcer.close()
    assert gold.headers["RateLimit-Policy"] == '"gold-hourly";q=1000;w=3600'
    assert free.headers["RateLimit-Policy"] == '"free-hourly";q=50;w=3600'
    assert anonymous.headers["RateLimit-Policy"] == '"100-per-1h";q=100;w=3600'


@pytest.mark.urls("tests.suite_django_urls")
def test_django_resolvers_from_settings(redis_sync: redis.Redis, redis_url: str, settings: Any,
                                        tmp_path: Path) -> None:
    import yaml
    from django.core.exceptions import ImproperlyConfigured
    from django.test import Client

    from ratewarden.enforcer.django import reset_enforcer

    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump({"tiers": TIERS}))
    settings.RATEWARDEN = {"POLICY_FILE": str(policy_file), "REDIS_URL": redis_url,
                           "USER_RESOLVER": lambda request: request.META.get("HTTP_X_USER"),
                           "TIER_RESOLVER": "tests.test_front_door.plan_header"}
    client = Client(REMOTE_ADDR="198.51.100.63")
    try:
        gold = client.get("/items/1", HTTP_X_USER="ada", HTTP_X_PLAN="gold")  # a DRF view: the throttle decides
        plain = client.get("/limited", HTTP_X_USER="ada", HTTP_X_PLAN="gold")  # a plain view: the middleware
        free = client.get("/items/1", HTTP_X_USER="bob")
        anonymous = client.get("/items/1")
        settings.RATEWARDEN = {**settings.RATEWARDEN, "TIER_RESOLVER": "tests.test_front_door.no_such_function"}
        with pytest.raises(ImproperlyConfigured, match="RATEWARDEN\\['TIER_RESOLVER'\\]: cannot import"):
            client.get("/items/1")
    finally:
        reset_enforcer()
    assert gold["RateLimit-Policy"] == '"gold-hourly";q=1000;w=3600'
    assert plain["RateLimit-Policy"] == '"gold-hourly";q=1000;w=3600, "2-per-1h";q=2;w=3600'
    assert free["RateLimit-Policy"] == '"free-hourly";q=50;w=3600'
    assert anonymous["RateLimit-Policy"] == '"100-per-1h";q=100;w=3600'


def plan_header(request: Any) -> str | None:
    """A tier resolver named by its dotted path in the Django test above."""
    return request.META.get("HTTP_X_PLAN")


def test_a_coroutine_key_function_under_wsgi_is_named(redis_sync: redis.Redis, redis_url: str) -> None:
    from flask import Flask

    from ratewarden.enforcer.wsgi import limit

    async def username(environ: dict[str, Any]) -> str:
        return "ada"

    app = Flask(__name__)
    app.post("/login")(limit({"rate": "2/hour", "scope": ["custom"]}, key=username)(lambda: {"ok": True}))
    enforcer = SyncEnforcer(policy_from_mapping({"tiers": TIERS}), EnforcerSettings(redis_url=redis_url))
    app.wsgi_app = WSGIMiddleware(app.wsgi_app, enforcer)  # type: ignore[method-assign]
    try:
        with pytest.raises(TypeError, match="key function 'username' is a coroutine function"):
            app.test_client().post("/login", json={})
    finally:
        enforcer.close()
