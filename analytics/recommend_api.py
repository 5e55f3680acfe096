"""``/recommendations``: proposed per-tier limits with their would-deny counts, and staging one as
a shadow rule on its tier in one call (audited)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from ratewarden.enforcer.policy import Rule

from .audit import AuditLog, Who
from .client import ClickHouse
from .fielderrors import UNPROCESSABLE
from .plans import PlanInfo, Plans
from .ranges import RangeName, window_of
from .recommend import recommend
from .staging import findings, stage

__all__ = ["recommend_router", "ProposalView", "StageRequest"]

_TIER = r"^[A-Za-z0-9_.-]{1,64}$"


class ProposalView(BaseModel):
    """A proposed per-client limit for a tier, and what it would have denied over the period."""

    tier: str
    limit: int = Field(description="requests per minute per client")
    period_s: int
    rule_name: str = Field(description="the name it is staged under")
    percentile: float
    headroom: float
    peak_at_percentile: int = Field(description="the legitimate clients' per-minute peak at the percentile")
    legit_clients: int = Field(description="clients whose peaks were taken (no alert in the period)")
    excluded_clients: list[str] = Field(description="clients left out: they had alerts in the period")
    requests: int = Field(description="the tier's requests in the period")
    would_deny_requests: int = Field(description="requests the limit would have denied (replayed per minute)")
    would_deny_clients: int
    would_deny_legit_requests: int = Field(description="of those, from clients without alerts")
    would_deny_legit_clients: int


class Recommendations(BaseModel):
    start: dt.datetime
    end: dt.datetime
    proposals: list[ProposalView]


class StageRequest(BaseModel):
    tier: str = Field(pattern=_TIER)
    limit: int = Field(ge=1, le=10_000_000, description="requests per minute per client (a proposal's limit)")
    name: str | None = Field(None, pattern=_TIER, description="the rule's name; default recommended-<limit>-per-1m")
    range: RangeName = Field("7d", description="the period the estimate kept with it is replayed over")


class Estimate(BaseModel):
    start: dt.datetime
    end: dt.datetime
    requests: int
    would_deny_requests: int
    would_deny_clients: int
    would_deny_legit_requests: int
    would_deny_legit_clients: int
    per_hour: float = Field(description="would_deny_requests per hour of the period")


class Observed(BaseModel):
    since: dt.datetime
    would_deny_requests: int = Field(description="requests the shadow rule reported since it was staged")
    would_deny_clients: int
    per_hour: float


class StagedFinding(BaseModel):
    """A staged rule's estimate beside what the enforcers found since: they confirm or refute it."""

    tier: str
    rule: str
    limit: int
    staged_at: dt.datetime
    actor: str
    still_shadow: bool = Field(description="false once the rule was switched on or removed")
    estimate: Estimate
    observed: Observed


class Staged(BaseModel):
    rule: Rule = Field(description="the shadow rule added")
    plan: PlanInfo


def recommend_router(clickhouse: ClickHouse, db: str, plans: Plans, audit: AuditLog) -> APIRouter:
    router = APIRouter(prefix="/recommendations", tags=["recommendations"], responses=UNPROCESSABLE)

    @router.get("")
    def recommendations(
            range: Annotated[RangeName, Query(description="the period of usage to learn from")] = "7d",
            percentile: Annotated[float, Query(gt=0, le=100, description="of the clients' per-minute peaks")] = 99.0,
            headroom: Annotated[float, Query(ge=1, le=100, description="the limit is the peak times this")] = 1.5,
            tier: Annotated[list[str] | None, Query(max_length=50, description="only these tiers")] = None,
    ) -> Recommendations:
        """Per tier: a per-client limit from legitimate clients' per-minute peaks (clients with alerts
        left out), and the requests and clients it would have denied over the period."""
        start, end = window_of(range)
        found = recommend(clickhouse, start, end, percentile, headroom, tier, db=db)
        return Recommendations(start=start, end=end, proposals=[ProposalView(**p.as_dict()) for p in found])

    @router.post("/stage")
    def stage_proposal(request: StageRequest, who: Who = Depends(audit.who)) -> Staged:
        """Add the proposal to its tier as a shadow rule, at run time: enforcers report what it would
        deny (``GET /api/v1/shadow``) without denying, confirming or refuting the estimate."""
        staged = stage(plans, audit, clickhouse, who, request.tier, request.limit, *window_of(request.range),
                       request.name, db=db)
        if staged is None:
            raise HTTPException(404, f"no tier {request.tier!r}")
        rule, after = staged
        return Staged(rule=rule, plan=plans.info(request.tier, after, plans.effective()[1]))

    @router.get("/staged")
    def staged_findings() -> list[StagedFinding]:
        """Each staged rule, newest first: the would-deny estimate it was staged with, and the requests
        and clients it would have denied since (shadow findings from ClickHouse), both per hour."""
        return [StagedFinding(**f) for f in findings(plans.store.client, plans, clickhouse, db=db)]

    return router
