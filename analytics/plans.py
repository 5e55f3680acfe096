"""Plans (tiers) through the admin API: list, create, edit, switch between shadow and enforcing,
drop the run-time version. Validated by the policy model, each error at its field's path;
applied through the run-time tier store (every enforcer within a second); every change audited."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel, Field, ValidationError

from ratewarden.enforcer.policy import Capacity, Policy, Tier
from ratewarden.enforcer.tiers import TierStore, with_live_tiers

from .audit import AuditLog, Who
from .fielderrors import UNPROCESSABLE, invalid

__all__ = ["PlanInfo", "TiersView", "plans_router", "Plans"]

TierName = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="the tier's name")]


class PlanInfo(BaseModel):
    """One effective tier and where it comes from."""

    name: str
    origin: Literal["file", "runtime", "runtime over file"] = Field(
        description="the policy file's, set at run time, or set at run time over the file's")
    shadow: bool = Field(description="the tier is evaluated and reported but never denies")
    tier: Tier = Field(description="the effective tier (rules, quotas, fail_mode, shadow, capacity_shares): "
                                   "the body PUT /tiers/{name} takes")
    capacity_shares: dict[str, float] = Field(
        description="capacity name -> the share of it this tier may use (from the policy file)")


class TiersView(BaseModel):
    tiers: dict[str, Tier] = Field(description="name -> effective tier")
    runtime: list[str] = Field(description="names of tiers set at run time")
    plans: list[PlanInfo]


class Mode(BaseModel):
    shadow: bool = Field(description="true: report only (shadow); false: enforce")


class Plans:
    """The effective tiers: the policy file's with the run-time ones laid over."""

    def __init__(self, store: TierStore, file_policy: Policy | None) -> None:
        self.store = store
        self.file_policy = file_policy

    def effective(self) -> tuple[dict[str, Tier], dict[str, Tier]]:
        """(effective tiers, run-time tiers)."""
        live = self.store.all()
        return (with_live_tiers(self.file_policy, live).tiers if self.file_policy else live), live

    def capacity(self) -> list[Capacity]:
        """The capacities with run-time tiers' shares laid over the file's."""
        return with_live_tiers(self.file_policy, self.store.all()).capacity if self.file_policy else []

    def get(self, name: str) -> Tier | None:
        return self.effective()[0].get(name)

    def names(self) -> set[str]:
        return set(self.effective()[0])

    def info(self, name: str, tier: Tier, live: dict[str, Tier]) -> PlanInfo:
        in_file = self.file_policy is not None and name in self.file_policy.tiers
        origin: Literal["file", "runtime", "runtime over file"] = (
            ("runtime over file" if in_file else "runtime") if name in live else "file")
        shares = {c.name: c.shares[name] for c in self.capacity() if name in c.shares}
        return PlanInfo(name=name, origin=origin, shadow=tier.shadow, tier=tier, capacity_shares=shares)

    def set(self, name: str, tier: Tier) -> None:
        """Validate ``tier`` within the whole policy (a 422 naming each bad field), then store it."""
        capacities = self.file_policy.capacity if self.file_policy else []
        known = {c.name for c in capacities}
        for capacity in tier.capacity_shares or {}:
            if capacity not in known:
                raise invalid(["body", "capacity_shares", capacity],
                              f"no capacity {capacity!r}; capacities are: {', '.join(sorted(known)) or 'none'}")
        if self.file_policy is not None:
            live = self.store.all()
            try:
                Policy.model_validate({**self.file_policy.model_dump(),
                                       "tiers": {**self.file_policy.tiers, **live, name: tier}})
            except ValidationError as exc:
                raise HTTPException(422, [_placed(error, name, capacities) for error in exc.errors(
                    include_url=False, include_context=False)]) from None
        self.store.set(name, tier)


def _placed(error: Any, tier: str, capacities: list[Capacity]) -> dict[str, Any]:
    """A policy-wide validation error at its place in the tier's body: a capacity whose shares no
    longer fit is the tier's ``capacity_shares.<name>``."""
    loc = list(error["loc"])
    if loc[:2] == ["tiers", tier]:
        loc = loc[2:]
    elif loc[:1] == ["capacity"] and len(loc) > 1 and isinstance(loc[1], int) and loc[1] < len(capacities):
        loc = ["capacity_shares", capacities[loc[1]].name]
    else:
        loc = []
    return {"loc": ["body", *loc], "msg": error["msg"], "type": error["type"]}


def plans_router(plans: Plans, audit: AuditLog) -> APIRouter:
    """``/tiers``: the plans' list, one plan, create or replace, shadow or enforce, drop."""
    router = APIRouter(prefix="/tiers", tags=["tiers"], responses=UNPROCESSABLE)

    def found(name: str) -> Tier:
        tier = plans.get(name)
        if tier is None:
            raise HTTPException(404, f"no tier {name!r}")
        return tier

    def dump(tier: Tier | None) -> dict[str, Any] | None:
        return tier.model_dump(mode="json") if tier is not None else None

    @router.get("")
    def list_tiers() -> TiersView:
        """The effective tiers (the policy file's, with run-time changes laid over) and which are run-time."""
        effective, live = plans.effective()
        return TiersView(tiers=effective, runtime=sorted(live),
                         plans=[plans.info(n, t, live) for n, t in sorted(effective.items())])

    @router.get("/{name}")
    def get_tier(name: TierName) -> PlanInfo:
        effective, live = plans.effective()
        return plans.info(name, found(name), live)

    @router.put("/{name}")
    def put_tier(name: TierName, tier: Tier, who: Who = Depends(audit.who)) -> PlanInfo:
        """Create or replace a tier's rules, quotas and fail mode at run time (every enforcer within a
        second). With ``shadow: true`` it is reported only until switched to enforcing (POST .../mode)."""
        before = plans.get(name)
        plans.set(name, tier)
        audit.record(who, "tier.put", name, dump(before), dump(tier))
        return plans.info(name, tier, plans.effective()[1])

    @router.post("/{name}/mode")
    def set_mode(name: TierName, mode: Mode, who: Who = Depends(audit.who)) -> PlanInfo:
        """Switch a tier between shadow (reported, never denying) and enforcing."""
        before = found(name)
        after = before.model_copy(update={"shadow": mode.shadow})
        plans.set(name, after)
        audit.record(who, "tier.shadow" if mode.shadow else "tier.enforce", name, dump(before), dump(after))
        return plans.info(name, after, plans.effective()[1])

    @router.delete("/{name}", status_code=204)
    def delete_tier(name: TierName, who: Who = Depends(audit.who)) -> None:
        """Drop a run-time tier: the policy file's version applies again (or the tier is gone)."""
        before = plans.get(name)
        if not plans.store.clear(name):
            raise HTTPException(404, f"no run-time tier {name!r}")
        audit.record(who, "tier.delete", name, dump(before), dump(plans.get(name)))

    return router
