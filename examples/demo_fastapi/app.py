"""The demo API behind ratewarden's enforcer.

Run from the repository root::

    uvicorn ratewarden.examples.demo_fastapi.app:app

It reads ``examples/policy.yaml`` (or ``RATEWARDEN_POLICY_FILE``) and the other
``RATEWARDEN_*`` settings. Without ``RATEWARDEN_REDIS_URL`` it starts a local
Valkey server for itself, so it works on a bare machine.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel
from starlette.routing import Route

from ratewarden.enforcer import Enforcer, EnforcerSettings, load_policy, metrics_app
from ratewarden.enforcer.asgi import RatewardenMiddleware, limit
from ratewarden.enforcer.logsetup import configure_logging

POLICY_FILE = Path(__file__).resolve().parent.parent / "policy.yaml"
MAX_ITEM_ID = 1000


class Credentials(BaseModel):
    username: str
    password: str


# failed logins per username, whatever the IP (the policy file counts them per IP)
LOGIN_PER_USER = {"name": "login-per-user", "algorithm": "sliding_window_log", "limit": 5, "period": "15m",
                  "scope": ["custom"], "count_statuses": [401, 403]}


async def login_username(request: Request) -> str | None:
    """The username a login names: the ``custom`` scope of ``LOGIN_PER_USER``."""
    try:
        body = await request.json()
    except ValueError:
        return None
    username = body.get("username") if isinstance(body, dict) else None
    return str(username) if username else None


def create_app(enforcer: Enforcer | None = None, *, protected: bool = True) -> FastAPI:
    """The demo app; with no ``enforcer``, one built from the environment.

    ``protected=False`` gives the same app with no enforcer at all (the benchmarks' baseline).
    """
    app = FastAPI(title="ratewarden demo API")
    if protected:
        enforcer = enforcer or _enforcer_from_environment()
        app.add_middleware(RatewardenMiddleware, enforcer=enforcer)
        app.state.enforcer = enforcer
    # Prometheus scrapes this process's decisions and latencies here (exempt in the policy)
    app.router.routes.append(Route("/metrics", metrics_app, include_in_schema=False))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/items")
    async def list_items(limit: int = 20) -> dict[str, list[dict[str, object]]]:
        return {"items": [{"id": i, "name": f"item {i}"} for i in range(1, min(max(limit, 1), 100) + 1)]}

    @app.get("/v1/items/{item_id}")
    async def get_item(item_id: int) -> dict[str, object]:
        if not 1 <= item_id <= MAX_ITEM_ID:
            raise HTTPException(status_code=404, detail="no such item")
        return {"id": item_id, "name": f"item {item_id}"}

    @app.get("/v1/search")
    async def search(q: str = "") -> dict[str, object]:
        return {"query": q, "results": [{"id": i} for i in range(1, 6)]}

    @app.post("/v1/login")
    @limit(LOGIN_PER_USER, key=login_username)
    async def login(credentials: Credentials) -> dict[str, str]:
        if credentials.password != "correct-horse":
            raise HTTPException(status_code=401, detail="wrong username or password")
        return {"token": f"session-for-{credentials.username}"}

    return app


def unprotected_app() -> FastAPI:
    """The demo app without ratewarden (``uvicorn --factory ratewarden.examples.demo_fastapi.app:unprotected_app``)."""
    return create_app(protected=False)


def _enforcer_from_environment() -> Enforcer:
    settings = EnforcerSettings()
    if settings.policy_file is None:
        settings.policy_file = POLICY_FILE
    if "RATEWARDEN_REDIS_URL" not in os.environ:
        from ratewarden.local import RedisServer

        server = RedisServer().start()
        settings.redis_url = server.url
        print(f"demo: no RATEWARDEN_REDIS_URL, started a local server at {server.url}")
    return Enforcer(load_policy(settings.policy_file), settings)


def __getattr__(name: str) -> FastAPI:
    # built on first access, so importing this module for create_app() starts nothing
    if name == "app":
        configure_logging()  # served as a process of its own: RATEWARDEN_LOG_FORMAT and _LEVEL apply
        globals()["app"] = application = create_app()
        return application
    raise AttributeError(name)
