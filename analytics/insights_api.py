"""What the console shows of one client or one endpoint over a range (1h, 24h, 7d, 30d): time
series from ClickHouse, and the client's quota use, alerts, penalties, override and key."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from ratewarden.enforcer.apikeys import ApiKeyStore
from ratewarden.enforcer.overrides import Override, OverrideStore

from . import insights, queries
from .client import ClickHouse
from .fielderrors import UNPROCESSABLE
from .keys_api import KeyInfo
from .overrides_api import ClientId
from .plans import Plans
from .ranges import BUCKET_S, RangeName, window_of

__all__ = ["insights_router"]


class Point(BaseModel):
    t: dt.datetime = Field(description="the bucket's start (UTC)")
    requests: int
    admitted: int
    denied: int
    cost: int
    status_classes: dict[str, int] = Field(description="requests per status class: 1xx .. 5xx")
    mean_latency_ms: float
    max_latency_ms: float


class DenialPoint(BaseModel):
    t: dt.datetime
    rule: str = Field(description="the rule that denied ('' for denials recorded before rules were)")
    kind: str = Field(description="rate, quota, concurrency, blocked or unavailable")
    requests: int


class DenialTotal(BaseModel):
    rule: str
    kind: str
    requests: int


class Quota(BaseModel):
    day: str
    month_start: str
    day_used: int
    month_used: int
    day_limit: int | None = Field(description="the tier's daily quota (cost units); null: none")
    month_limit: int | None = Field(description="the tier's monthly quota (cost units); null: none")


class Alert(BaseModel):
    dedup_key: str
    alert_type: str
    severity: str
    client_id: str
    tier: str
    window_start: dt.datetime
    first_seen: dt.datetime
    last_seen: dt.datetime
    occurrences: int
    evidence: dict[str, Any]
    suggested_action: str
    version: int


class Penalty(BaseModel):
    penalty_id: str
    client_id: str
    action: str = Field(description="block or throttle")
    tier: str
    detector: str
    reason: str
    created_at: dt.datetime
    expires_at: dt.datetime


class Window(BaseModel):
    range: RangeName
    start: dt.datetime
    end: dt.datetime
    bucket_s: int = Field(description="seconds per point: 60 (1h), 900 (24h), 3600 (7d), 21600 (30d)")


class ClientView(BaseModel):
    client_id: str
    tier: str | None = Field(description="the tier of its latest requests (or its override's)")
    window: Window
    series: list[Point]
    denials: list[DenialPoint]
    denial_totals: list[DenialTotal]
    quota: Quota
    alerts: list[Alert] = Field(description="alerts about the client in the range, newest first (at most 50)")
    penalties: list[Penalty] = Field(description="penalties applied to it in the range, newest first (at most 50)")
    override: Override | None
    key: KeyInfo | None = Field(description="its API key (k:<id> clients)")


class TopClient(BaseModel):
    client_id: str
    tier: str
    requests: int
    denied: int


class EndpointView(BaseModel):
    route: str
    window: Window
    series: list[Point]
    denials: list[DenialPoint]
    denial_totals: list[DenialTotal]
    top_clients: list[TopClient]


Range = Annotated[RangeName, Query(description="1h, 24h, 7d or 30d")]
End = Annotated[dt.datetime | None, Query(description="the range's end (default now)")]


def _totals(points: list[dict[str, Any]]) -> list[DenialTotal]:
    sums: dict[tuple[str, str], int] = {}
    for p in points:
        sums[p["rule"], p["kind"]] = sums.get((p["rule"], p["kind"]), 0) + int(p["requests"])
    return [DenialTotal(rule=r, kind=k, requests=n) for (r, k), n in sorted(sums.items(), key=lambda x: -x[1])]


def insights_router(clickhouse: ClickHouse, db: str, plans: Plans, overrides: OverrideStore,
                    keys: Callable[[], ApiKeyStore | None],
                    check_end: Callable[[str, dt.datetime], None]) -> APIRouter:
    """``/clients/{client_id}`` and ``/endpoints/detail``. ``check_end`` refuses an end ClickHouse cannot hold."""
    router = APIRouter(tags=["usage"], responses=UNPROCESSABLE)

    def window(name: RangeName, end: dt.datetime | None) -> tuple[Window, dt.datetime, dt.datetime]:
        if end is not None:
            check_end("end", end)
        start, stop = window_of(name, end)
        return Window(range=name, start=start, end=stop, bucket_s=BUCKET_S[name]), start, stop

    @router.get("/clients/{client_id:path}")
    def client_view(client_id: ClientId, range: Range = "24h", end: End = None) -> ClientView:
        """One client over a range: series, denials by rule and kind, quota use today and this
        (billing) month, alerts, penalties, its override and its key."""
        info, start, stop = window(range, end)
        bucket = info.bucket_s
        override = overrides.get(client_id)
        store = keys()
        record = store.get(client_id[2:]) if store is not None and client_id.startswith("k:") else None
        tier = ((override.tier if override is not None else None)
                or insights.latest_tier(clickhouse, client_id, start, stop, db=db)
                or (record.tier if record is not None else None))
        plan = plans.get(tier) if tier else None
        if plan is not None and override is not None:
            plan = override.custom_tier(plan) or plan
        # the range's last bucket may end after `end` (tomorrow, even): quotas are counted on `end`'s day
        day = queries.as_utc(end).date() if end is not None else dt.datetime.now(dt.UTC).date()
        quota = queries.quota_consumption(clickhouse, client_id, day,
                                          plan.quotas.billing_anchor_day if plan else None, db=db)
        denials = insights.denials(clickhouse, "client_id", client_id, start, stop, bucket, db=db)
        points = insights.series(clickhouse, "client_id", client_id, start, stop, bucket, db=db)
        return ClientView(
            client_id=client_id, tier=tier, window=info, series=[Point(**p) for p in points],
            denials=[DenialPoint(**d) for d in denials], denial_totals=_totals(denials),
            quota=Quota(**{k: v for k, v in quota.items() if k != "client_id"},
                        day_limit=plan.quotas.daily if plan else None,
                        month_limit=plan.quotas.monthly if plan else None),
            alerts=[Alert(**a) for a in queries.alert_history(clickhouse, start, stop, client_id, 50, db=db)],
            penalties=[Penalty(**p) for p in queries.penalty_history(clickhouse, start, stop, client_id, 50, db=db)],
            override=override,
            key=KeyInfo.of(record, store.previous(record.id)) if store is not None and record is not None else None)

    @router.get("/endpoints/detail")
    def endpoint_view(route: Annotated[str, Query(min_length=1, max_length=300,
                                                  description="route template, e.g. 'GET /v1/items/{item_id}'")],
                      range: Range = "24h", end: End = None) -> EndpointView:
        """One route over a range: series, denials by rule and kind, its top clients."""
        info, start, stop = window(range, end)
        denials = insights.denials(clickhouse, "route", route, start, stop, info.bucket_s, db=db)
        return EndpointView(
            route=route, window=info,
            series=[Point(**p) for p in insights.series(clickhouse, "route", route, start, stop, info.bucket_s,
                                                        db=db)],
            denials=[DenialPoint(**d) for d in denials], denial_totals=_totals(denials),
            top_clients=[TopClient(**c) for c in insights.top_clients_of_route(clickhouse, route, start, stop,
                                                                               db=db)])

    return router
