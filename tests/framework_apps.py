"""The same small API in every framework ratewarden fronts, each with its own integration, for the
behaviour suite (tests/test_frameworks.py):

- ``GET /healthz``: exempt by the policy
- ``GET /items/{item_id}``: the policy's rules only
- ``GET /limited``: plus a route rule ``"2/hour"`` written the framework's way (``@limit``, or a
  FastAPI ``RateLimit`` dependency on the router)

Each builder returns a :class:`Driver` whose requests come from one client address.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ratewarden.enforcer import Enforcer, EnforcerSettings, SyncEnforcer, policy_from_mapping
from ratewarden.enforcer.decision import Decision
from ratewarden.enforcer.events import RequestEvent, make_event

POLICY: dict[str, Any] = {
    "tiers": {
        "anonymous": {"rules": [{"name": "per-ip", "algorithm": "fixed_window", "limit": 5, "period": "1h",
                                 "scope": ["ip"]}]},
        "free": {},
    },
    "endpoints": [{"route": "GET /healthz", "exempt": True}],
}
ROUTE_RATE = "2/hour"


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body)


@dataclass
class RecordingPublisher:
    """Stands in for the Kafka publisher: keeps the events the adapter built (their delivery to Kafka
    is tests/test_events.py's subject)."""

    events: list[RequestEvent] = field(default_factory=list)

    def publish(self, event: RequestEvent) -> None:
        self.events.append(event)

    def publish_decision(self, decision: Decision, method: str, path: str, user_agent: str | None, status: int,
                         latency_ms: float, service: str, instance: str) -> None:
        assert decision.identity is not None
        self.publish(make_event(decision, decision.identity, method=method, path=path, user_agent=user_agent,
                                status=status, latency_ms=latency_ms, service=service, instance=instance))

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    def start_thread(self) -> None: ...

    def close(self) -> None: ...


@dataclass
class Driver:
    get: Callable[[str], Response]
    publisher: RecordingPublisher
    sees_unrouted: bool = True  # whether requests no route matches reach ratewarden at all


def _settings(redis_url: str) -> EnforcerSettings:
    return EnforcerSettings(redis_url=redis_url, redis_budget_ms=2000)


@contextlib.contextmanager
def _asgi(app: Any, ip: str, publisher: RecordingPublisher, sees_unrouted: bool = True) -> Iterator[Driver]:
    from starlette.testclient import TestClient

    with TestClient(app, client=(ip, 50000)) as client:
        def get(path: str) -> Response:
            response = client.get(path)
            return Response(response.status_code, {k.lower(): v for k, v in response.headers.items()},
                            response.content)

        yield Driver(get, publisher, sees_unrouted)


@contextlib.contextmanager
def fastapi_app(redis_url: str, ip: str, tmp_path: Path, policy: dict[str, Any] = POLICY) -> Iterator[Driver]:
    from fastapi import APIRouter, Depends, FastAPI

    from ratewarden.enforcer.asgi import RatewardenMiddleware
    from ratewarden.enforcer.fastapi import RateLimit

    publisher = RecordingPublisher()
    app = FastAPI()
    app.add_middleware(RatewardenMiddleware, enforcer=Enforcer(policy_from_mapping(policy), _settings(redis_url)),
                       publisher=publisher)
    limited = APIRouter(dependencies=[Depends(RateLimit(ROUTE_RATE))])

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @limited.get("/limited")
    async def limited_route() -> dict[str, bool]:
        return {"ok": True}

    app.include_router(limited)
    with _asgi(app, ip, publisher) as driver:
        yield driver


@contextlib.contextmanager
def starlette_app(redis_url: str, ip: str, tmp_path: Path, policy: dict[str, Any] = POLICY) -> Iterator[Driver]:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from ratewarden.enforcer.asgi import RatewardenMiddleware, limit

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def item(request: Request) -> JSONResponse:
        return JSONResponse({"id": request.path_params["item_id"]})

    @limit(ROUTE_RATE)
    async def limited(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    publisher = RecordingPublisher()
    enforcer = Enforcer(policy_from_mapping(policy), _settings(redis_url))
    app = Starlette(routes=[Route("/healthz", healthz), Route("/items/{item_id:int}", item),
                            Route("/limited", limited)],
                    middleware=[Middleware(RatewardenMiddleware, enforcer=enforcer, publisher=publisher)])
    with _asgi(app, ip, publisher) as driver:
        yield driver


def _litestar(redis_url: str, publisher: RecordingPublisher, inside: bool, policy: dict[str, Any]) -> Any:
    from litestar import Litestar, get
    from litestar.middleware import DefineMiddleware

    from ratewarden.enforcer.asgi import RatewardenMiddleware, limit, on_shutdown

    @get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @get("/items/{item_id:int}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @get("/limited")
    @limit(ROUTE_RATE)
    async def limited() -> dict[str, bool]:
        return {"ok": True}

    enforcer = Enforcer(policy_from_mapping(policy), _settings(redis_url))
    if inside:
        return Litestar([healthz, item, limited], on_shutdown=[on_shutdown(enforcer)], middleware=[
            DefineMiddleware(RatewardenMiddleware, enforcer=enforcer, publisher=publisher)])
    return RatewardenMiddleware(Litestar([healthz, item, limited]), enforcer, publisher=publisher)


@contextlib.contextmanager
def litestar_app(redis_url: str, ip: str, tmp_path: Path, policy: dict[str, Any] = POLICY) -> Iterator[Driver]:
    """Litestar's own middleware form: Litestar routes first, so requests no route matches never reach it."""
    publisher = RecordingPublisher()
    with _asgi(_litestar(redis_url, publisher, True, policy), ip, publisher, sees_unrouted=False) as driver:
        yield driver


@contextlib.contextmanager
def litestar_wrapped_app(redis_url: str, ip: str, tmp_path: Path,
                         policy: dict[str, Any] = POLICY) -> Iterator[Driver]:
    """The middleware around a Litestar app: the route is found through Litestar's router."""
    publisher = RecordingPublisher()
    with _asgi(_litestar(redis_url, publisher, False, policy), ip, publisher) as driver:
        yield driver


@contextlib.contextmanager
def flask_app(redis_url: str, ip: str, tmp_path: Path, policy: dict[str, Any] = POLICY) -> Iterator[Driver]:
    from flask import Flask

    from ratewarden.enforcer.wsgi import RatewardenMiddleware, limit

    app = Flask(__name__)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.get("/limited")
    @limit(ROUTE_RATE)
    def limited() -> dict[str, bool]:
        return {"ok": True}

    publisher = RecordingPublisher()
    enforcer = SyncEnforcer(policy_from_mapping(policy), _settings(redis_url))
    app.wsgi_app = RatewardenMiddleware(app.wsgi_app, enforcer, publisher=publisher)  # type: ignore[method-assign]
    client = app.test_client()

    def get(path: str) -> Response:
        response = client.get(path, environ_base={"REMOTE_ADDR": ip})
        response.close()  # as a WSGI server does once the response is sent: the request's event follows
        return Response(response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.data)

    try:
        yield Driver(get, publisher)
    finally:
        enforcer.close()


@contextlib.contextmanager
def django_app(redis_url: str, ip: str, tmp_path: Path, policy: dict[str, Any] = POLICY, settings: Any = None,
               monkeypatch: Any = None) -> Iterator[Driver]:
    """DRF views (decided by ``RatewardenThrottle``) and a plain view with ``@limit`` (decided by the
    middleware), through Django's test client; URLs in tests/suite_django_urls.py."""
    from django.test import Client

    from ratewarden.enforcer.django import conf, reset_enforcer

    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(policy))
    settings.ROOT_URLCONF = "tests.suite_django_urls"
    settings.RATEWARDEN = {"POLICY_FILE": str(policy_file), "REDIS_URL": redis_url, "REDIS_BUDGET_MS": 2000}
    publisher = RecordingPublisher()
    monkeypatch.setattr(conf, "get_publisher", lambda: publisher)
    client = Client(REMOTE_ADDR=ip)

    def get(path: str) -> Response:
        response = client.get(path)
        return Response(response.status_code, {k.lower(): v for k, v in response.items()}, response.content)

    try:
        yield Driver(get, publisher)
    finally:
        reset_enforcer()
