"""Per-client overrides set at run time: another tier, custom limits, a block, an allow-list entry.

Overrides that expire are also indexed by expiry (a sorted set beside the hash), so lapsed ones
are found and removed without reading the others (:meth:`OverrideStore.purge_expired`, which
the stream worker runs on a timer): the hash every enforcer reloads holds only live entries.
"""

from __future__ import annotations

import time

import redis
from pydantic import BaseModel, ConfigDict, Field, model_validator
from redis.cluster import RedisCluster

from .changes import VERSION_KEY, commit_change
from .policy import Quotas, Rule, Tier
from .scripts import script

__all__ = ["Override", "OverrideStore", "OVERRIDES_HASH", "OVERRIDES_EXPIRY"]

OVERRIDES_HASH = "rw:{ctl}:overrides"  # field: client id -> Override (JSON)
OVERRIDES_EXPIRY = "rw:{ctl}:overrides:expiry"  # member: client id, score: expires_at (expiring ones only)


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
        source = script("purge_overrides").source
        self._purge = client.register_script(source)

    def set(self, override: Override) -> None:
        """Store ``override``; every enforcer honours it within a second."""
        value = override.model_dump_json(exclude_defaults=True)

        def write(pipe: redis.client.Pipeline) -> None:
            pipe.hset(OVERRIDES_HASH, override.client_id, value)
            if override.expires_at is None:
                pipe.zrem(OVERRIDES_EXPIRY, override.client_id)
            else:
                pipe.zadd(OVERRIDES_EXPIRY, {override.client_id: override.expires_at})

        commit_change(self.client, f"override {override.client_id}", write)

    def clear(self, client_id: str) -> bool:
        def write(pipe: redis.client.Pipeline) -> None:
            pipe.hdel(OVERRIDES_HASH, client_id)
            pipe.zrem(OVERRIDES_EXPIRY, client_id)

        return bool(commit_change(self.client, f"override {client_id}", write)[0])

    def get(self, client_id: str) -> Override | None:
        raw = self.client.hget(OVERRIDES_HASH, client_id)
        return Override.model_validate_json(raw) if raw else None

    def list(self, include_expired: bool = False) -> list[Override]:
        now = time.time()
        found = [Override.model_validate_json(raw) for raw in self.client.hvals(OVERRIDES_HASH)]
        return [o for o in found if include_expired or o.active(now)]

    def purge_expired(self, now: float | None = None, batch: int = 1000) -> int:
        """Remove overrides lapsed by ``now``, ``batch`` per script call; returns how many.

        Reads only the expiry index's lapsed part, so its cost follows what lapsed, not what is
        stored. No change message is published: the version moves, so enforcers reload within a
        poll interval (one reload, where a message per override would cost a read each)."""
        now = time.time() if now is None else now
        removed = 0
        while True:
            count = int(self._purge(keys=[OVERRIDES_HASH, OVERRIDES_EXPIRY, VERSION_KEY], args=[now, batch]))
            removed += count
            if count < batch:
                return removed

    def index_expiring(self) -> int:
        """Add expiring overrides missing from the expiry index (those written before it existed);
        returns how many. Reads the whole hash: for start-up, not for a timer."""
        indexed = 0
        for name, raw in self.client.hscan_iter(OVERRIDES_HASH, count=1000):
            try:
                override = Override.model_validate_json(raw)
            except ValueError:
                continue  # an unreadable entry is the enforcers' to report, and never expires
            if override.expires_at is not None and self.client.zadd(OVERRIDES_EXPIRY, {name: override.expires_at},
                                                                    nx=True):
                indexed += 1
        return indexed
