"""Per-client overrides set at run time: another tier, custom limits, a block, an allow-list entry."""

from __future__ import annotations

import time

import redis
from pydantic import BaseModel, ConfigDict, Field, model_validator
from redis.cluster import RedisCluster

from .changes import commit_change
from .policy import Quotas, Rule, Tier

__all__ = ["Override", "OverrideStore", "OVERRIDES_HASH"]

OVERRIDES_HASH = "rw:{ctl}:overrides"  # field: client id -> Override (JSON)


class Override(BaseModel):
    """A change to one client's treatment. ``client_id`` is ``k:<key id>``, ``u:<user>`` or ``ip:<addr>``."""

    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(min_length=1, max_length=200)
    tier: str | None = Field(None, description="use this tier instead of the client's own")
    rules: list[Rule] | None = Field(None, description="replace the tier's rules")
    quotas: Quotas | None = Field(None, description="replace the tier's quotas")
    billing_anchor_day: int | None = Field(
        None, ge=1, le=31, description="this client's monthly quota resets on this day (clamped to month length)")
    block: bool = Field(False, description="deny every request")
    allow: bool = Field(False, description="never limit (allow-list)")
    reason: str = Field("", max_length=500)
    source: str = Field("api", max_length=64, description="who set it: api, console, stream detector name")
    expires_at: float | None = Field(None, description="unix time it lapses; None: until cleared")

    @model_validator(mode="after")
    def _block_or_allow(self) -> Override:
        if self.block and self.allow:
            raise ValueError("an override cannot both block and allow")
        return self

    def active(self, now: float | None = None) -> bool:
        return self.expires_at is None or self.expires_at > (now if now is not None else time.time())

    def custom_tier(self, base: Tier) -> Tier | None:
        """The tier this override makes of ``base``, or None if it changes no limits."""
        if self.rules is None and self.quotas is None and self.billing_anchor_day is None:
            return None
        quotas = self.quotas if self.quotas is not None else base.quotas
        if self.billing_anchor_day is not None:
            quotas = quotas.model_copy(update={"billing_anchor_day": self.billing_anchor_day})
        return base.model_copy(update={"rules": self.rules if self.rules is not None else base.rules,
                                       "quotas": quotas})


class OverrideStore:
    """Set, clear and list overrides (management side, synchronous)."""

    def __init__(self, client: redis.Redis | RedisCluster) -> None:
        self.client = client

    def set(self, override: Override) -> None:
        """Store ``override``; every enforcer honours it within a second."""
        value = override.model_dump_json(exclude_defaults=True)
        commit_change(self.client, f"override {override.client_id}",
                      lambda pipe: pipe.hset(OVERRIDES_HASH, override.client_id, value))

    def clear(self, client_id: str) -> bool:
        return bool(commit_change(self.client, f"override {client_id}",
                                  lambda pipe: pipe.hdel(OVERRIDES_HASH, client_id))[0])

    def get(self, client_id: str) -> Override | None:
        raw = self.client.hget(OVERRIDES_HASH, client_id)
        return Override.model_validate_json(raw) if raw else None

    def list(self, include_expired: bool = False) -> list[Override]:
        now = time.time()
        found = [Override.model_validate_json(raw) for raw in self.client.hvals(OVERRIDES_HASH)]
        return [o for o in found if include_expired or o.active(now)]

    def purge_expired(self) -> int:
        """Remove lapsed overrides; returns how many."""
        now = time.time()
        lapsed = [o.client_id for o in self.list(include_expired=True) if not o.active(now)]
        for client_id in lapsed:
            self.clear(client_id)
        return len(lapsed)
