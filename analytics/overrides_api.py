"""Per-client overrides and the stream's penalties through the admin API: list, set, clear one,
clear every active penalty in one call. Every change audited."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel, Field

from ratewarden.enforcer.overrides import Override, OverrideStore

from .audit import AuditLog, Who
from .fielderrors import UNPROCESSABLE, invalid

__all__ = ["ClientId", "overrides_router", "PENALTY_SOURCE"]

ClientId = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^(k|u|ip):\S+$",
                               description="k:<key id>, u:<user> or ip:<address>")]
PENALTY_SOURCE = "stream:"  # the source prefix of overrides the stream sets as penalties


class Cleared(BaseModel):
    cleared: list[str] = Field(description="client ids whose penalty was cleared")


def overrides_router(store: OverrideStore, audit: AuditLog) -> APIRouter:
    """``/overrides``."""
    router = APIRouter(prefix="/overrides", tags=["overrides"], responses=UNPROCESSABLE)

    def dump(override: Override | None) -> dict[str, object] | None:
        return override.model_dump(mode="json", exclude_defaults=True) if override is not None else None

    @router.get("")
    def list_overrides(include_expired: bool = False) -> list[Override]:
        """Active overrides (operators') and penalties (``source`` stream:<detector>)."""
        return store.list(include_expired)

    @router.put("/{client_id:path}")
    def put_override(client_id: ClientId, override: Override, who: Who = Depends(audit.who)) -> Override:
        """Create or replace a client's override (tier, rules, quotas, block or allow, expiry)."""
        if override.client_id != client_id:
            raise invalid(["body", "client_id"], "must match the path")
        before = store.get(client_id)
        store.set(override)
        audit.record(who, "override.put", client_id, dump(before), dump(override))
        return override

    @router.delete("/{client_id:path}", status_code=204)
    def delete_override(client_id: ClientId, who: Who = Depends(audit.who)) -> None:
        """Clear a client's override or penalty: every enforcer within a second."""
        before = store.get(client_id)
        if not store.clear(client_id):
            raise HTTPException(404, f"no override for {client_id!r}")
        audit.record(who, "override.clear", client_id, dump(before), None)

    @router.post("/clear-penalties")
    def clear_penalties(who: Who = Depends(audit.who)) -> Cleared:
        """Clear every active penalty the stream set (operators' overrides stay), in one call."""
        cleared = []
        for override in store.list():
            if override.source.startswith(PENALTY_SOURCE) and store.clear(override.client_id):
                audit.record(who, "penalty.clear", override.client_id, dump(override), None)
                cleared.append(override.client_id)
        return Cleared(cleared=sorted(cleared))

    return router
