"""The admin and usage HTTP API (``ratewarden admin``): usage queries, tiers, overrides, API
keys and alerts, behind a bearer admin token. OpenAPI docs at ``/docs``.

Changes go to the same Redis the enforcers read, so they apply everywhere within a second.
ClickHouse is read through the query layer (``ratewarden.analytics.queries``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any, Literal

import redis
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.cluster import RedisCluster

from ratewarden.enforcer.apikeys import DEFAULT_ROTATION_GRACE_S, ApiKeyStore
from ratewarden.enforcer.loader import load_policy
from ratewarden.enforcer.overrides import OverrideStore
from ratewarden.enforcer.tiers import TierStore
from ratewarden.enforcer.topology import parse_redis_url, sync_client

from . import queries
from .audit import AuditLog, audit_router
from .client import ClickHouse, Serialized
from .console_assets import console_router
from .insights_api import insights_router
from .keys_api import MAX_GRACE_S, keys_router
from .overrides_api import ClientId, overrides_router
from .plans import Plans, plans_router
from .recommend_api import recommend_router
from .tokens import expiring_token, token_valid

__all__ = ["AdminSettings", "create_admin_app", "expiring_token", "token_valid"]

Limit = Annotated[int, Query(ge=1, le=1000)]


class AdminSettings(BaseSettings):
    """What the admin API reads from its environment. See the README's settings table."""

    model_config = SettingsConfigDict(env_prefix="RATEWARDEN_", extra="ignore")

    admin_token: SecretStr | None = Field(None, description="bearer token of the admin API (>= 16 characters)",
                                          min_length=16)
    admin_host: str = Field("127.0.0.1", description="address the admin API listens on")
    admin_port: int = Field(8090, ge=1, le=65535, description="port of the admin API")
    redis_url: str = Field("redis://127.0.0.1:6379/0")
    clickhouse_url: str | None = None
    clickhouse_database: str = Field("ratewarden", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    api_key_secret: SecretStr | None = None
    policy_file: str | None = Field(None, description="the policy file the enforcers load (for GET /tiers)")
    admin_metrics: Literal["open", "token", "off"] = Field(
        "open", description="GET /metrics (Prometheus): without auth, behind the admin token, or not served")
    key_rotation_grace_s: float = Field(DEFAULT_ROTATION_GRACE_S, ge=0, le=MAX_GRACE_S,
                                        description="seconds a rotated-out API key keeps working")
    audit_max_entries: int = Field(10_000, ge=100, description="the audit log keeps about this many changes")


_BEARER = HTTPBearer(auto_error=False)
def _bearer(token: SecretStr) -> Callable[..., None]:
    admin_token = token.get_secret_value()

    def require_token(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]) -> None:
        if credentials is None or not token_valid(credentials.credentials, admin_token):
            raise HTTPException(401, "a valid admin bearer token is required", headers={"WWW-Authenticate": "Bearer"})

    return require_token


_FIRST, _LAST = dt.date(1970, 1, 2), dt.date(2105, 12, 31)  # what ClickHouse's DateTime holds


def _invalid(field: str, message: str) -> HTTPException:
    return HTTPException(422, [{"loc": ["query", field], "msg": message, "type": "value_error"}])


def _checked(field: str, value: dt.date) -> None:
    day = value.date() if isinstance(value, dt.datetime) else value
    if not _FIRST <= day <= _LAST:
        raise _invalid(field, f"must be between {_FIRST} and {_LAST}")


def _window(start: dt.datetime | None, end: dt.datetime | None,
            default: dt.timedelta) -> tuple[dt.datetime, dt.datetime]:
    for field, value in (("start", start), ("end", end)):
        if value is not None:
            _checked(field, value)
    end = queries.as_utc(end) if end else dt.datetime.now(dt.UTC)
    start = queries.as_utc(start) if start else max(end - default, dt.datetime.combine(_FIRST, dt.time(), dt.UTC))
    if start >= end:
        raise _invalid("start", "start must be before end")
    return start, end


def create_admin_app(settings: AdminSettings, clickhouse: ClickHouse,
                     client: redis.Redis | RedisCluster | None = None) -> FastAPI:
    """The admin API on ``clickhouse`` and the enforcers' Redis (``settings.redis_url``: one server,
    a cluster or a primary behind Sentinels)."""
    if settings.admin_token is None:
        raise ValueError("set RATEWARDEN_ADMIN_TOKEN (at least 16 characters)")
    if client is None:
        client = sync_client(parse_redis_url(settings.redis_url))
    db = settings.clickhouse_database
    if not isinstance(clickhouse, Serialized):  # requests run in threads: one query at a time
        clickhouse = Serialized(clickhouse)
    file_policy = load_policy(settings.policy_file) if settings.policy_file else None
    overrides, tiers = OverrideStore(client), TierStore(client)
    keys = ApiKeyStore(client, settings.api_key_secret.get_secret_value().encode()) if settings.api_key_secret else None

    def query(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return function(clickhouse, *args, db=db, **kwargs)

    app = FastAPI(title="ratewarden admin API", version="1", description=__doc__)
    api = APIRouter(prefix="/api/v1", dependencies=[Depends(_bearer(settings.admin_token))])

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    if settings.admin_metrics != "off":
        guard = [Depends(_bearer(settings.admin_token))] if settings.admin_metrics == "token" else []

        @app.get("/metrics", tags=["health"], dependencies=guard, response_class=Response)
        def metrics(request: Request) -> Response:
            """This process's Prometheus metrics (with the embedded default, the worker's too). No
            label names a client, so the page is safe to serve without the token on an internal port."""
            encoder, content_type = choose_encoder(request.headers.get("accept", ""))
            return Response(encoder(REGISTRY), headers={"content-type": content_type})

    app.include_router(console_router())  # the console's static files: no data, no token needed

    # -- usage ---------------------------------------------------------------------

    @api.get("/usage", tags=["usage"])
    def usage(start: dt.datetime | None = None, end: dt.datetime | None = None,
              step: Literal["minute", "hour", "day"] = "minute",
              client_id: Annotated[str | None, Query(max_length=200)] = None) -> list[dict[str, Any]]:
        """Requests, admitted, denied and cost per step (default: the last hour, per minute)."""
        return query(queries.usage_over_time, *_window(start, end, dt.timedelta(hours=1)), step, client_id)

    @api.get("/usage/tiers", tags=["usage"])
    def per_tier(start: dt.datetime | None = None, end: dt.datetime | None = None) -> list[dict[str, Any]]:
        """Requests and denials per minute and tier (default: the last hour): the console's live chart."""
        return query(queries.tier_rates, *_window(start, end, dt.timedelta(hours=1)))

    @api.get("/usage/top", tags=["usage"])
    def top(start: dt.datetime | None = None, end: dt.datetime | None = None,
            by: Literal["requests", "denied"] = "requests", limit: Limit = 10) -> list[dict[str, Any]]:
        """Top clients by requests or denials (default: the last 24 hours)."""
        return query(queries.top_clients, *_window(start, end, dt.timedelta(days=1)), by, limit)

    @api.get("/usage/endpoints", tags=["usage"])
    def endpoints(start: dt.datetime | None = None, end: dt.datetime | None = None) -> list[dict[str, Any]]:
        """Per-route usage (default: the last hour)."""
        return query(queries.endpoint_usage, *_window(start, end, dt.timedelta(hours=1)))

    @api.get("/usage/quota/{client_id:path}", tags=["usage"])
    def quota(client_id: ClientId, day: dt.date | None = None,
              anchor_day: Annotated[int | None, Query(ge=1, le=31)] = None) -> dict[str, Any]:
        """Quota consumption of one client for the day and the (calendar or billing) month."""
        if day is not None:
            _checked("day", day)
        return query(queries.quota_consumption, client_id, day, anchor_day)

    @api.get("/usage/export.csv", tags=["usage"], response_class=Response,
             responses={200: {"content": {"text/csv": {}}}})
    def export(start: dt.date, end: dt.date) -> Response:
        """Usage per client and day in [start, end), as CSV for billing."""
        _checked("start", start)
        _checked("end", end)
        if start >= end:
            raise _invalid("start", "start must be before end")
        return Response(query(queries.usage_csv, start, end), media_type="text/csv")

    @api.get("/alerts", tags=["alerts"])
    def alerts(start: dt.datetime | None = None, end: dt.datetime | None = None,
               client_id: Annotated[str | None, Query(max_length=200)] = None,
               limit: Limit = 100) -> list[dict[str, Any]]:
        """Alerts (latest version of each), newest first (default: the last 24 hours)."""
        return query(queries.alert_history, *_window(start, end, dt.timedelta(days=1)), client_id, limit)

    @api.get("/penalties", tags=["alerts"])
    def penalties(start: dt.datetime | None = None, end: dt.datetime | None = None,
                  client_id: Annotated[str | None, Query(max_length=200)] = None,
                  limit: Limit = 100) -> list[dict[str, Any]]:
        """Penalties the stream applied, newest first (default: the last 24 hours)."""
        return query(queries.penalty_history, *_window(start, end, dt.timedelta(days=1)), client_id, limit)

    @api.get("/shadow", tags=["usage"])
    def shadow(start: dt.datetime | None = None, end: dt.datetime | None = None,
               top: Annotated[int, Query(ge=1, le=100)] = 10) -> list[dict[str, Any]]:
        """Per shadow rule: how many requests it would have denied and which clients
        (default: the last 24 hours), the evidence for switching it on."""
        return query(queries.shadow_denials, *_window(start, end, dt.timedelta(days=1)), top)

    # -- plans, overrides, keys, audit, client and endpoint views, recommendations (modules of their own)
    audit = AuditLog(client, settings.audit_max_entries, settings.admin_token.get_secret_value())
    plans = Plans(tiers, file_policy)

    def key_store() -> ApiKeyStore:
        if keys is None:
            raise HTTPException(503, "API keys are disabled: set RATEWARDEN_API_KEY_SECRET")
        return keys

    api.include_router(plans_router(plans, audit))
    api.include_router(overrides_router(overrides, audit))
    api.include_router(keys_router(key_store, audit, plans.names, settings.key_rotation_grace_s))
    api.include_router(audit_router(audit))
    api.include_router(insights_router(clickhouse, db, plans, overrides, lambda: keys, _checked))
    api.include_router(recommend_router(clickhouse, db, plans, audit))
    app.include_router(api)
    return app
