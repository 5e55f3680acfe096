"""Tiers changed at run time: stored in Redis, laid over the policy file's tiers by every
enforcer within a second (a tier set here replaces the file's tier of that name or adds one;
cleared, the file's version applies again)."""

from __future__ import annotations

from typing import cast

import redis
from pydantic import ValidationError
from redis.cluster import RedisCluster

from .changes import commit_change
from .logs import get_logger
from .policy import Capacity, Policy, Tier, with_tier_shares

__all__ = ["TierStore", "TIERS_HASH", "with_live_tiers"]

log = get_logger("ratewarden.enforcer")

TIERS_HASH = "rw:{ctl}:tiers"  # field: tier name -> Tier (JSON)


def with_live_tiers(policy: Policy, tiers: dict[str, Tier]) -> Policy:
    """``policy`` with ``tiers`` replacing or adding tiers of the same names, and their
    ``capacity_shares`` (if set) in place of the capacities' shares for them.

    A capacity whose shares would no longer fit (the policy file changed under a run-time tier)
    keeps the file's shares, and is logged."""
    if not tiers:
        return policy
    update: dict[str, object] = {"tiers": {**policy.tiers, **tiers}}
    given = {name: tier.capacity_shares for name, tier in tiers.items() if tier.capacity_shares is not None}
    if given and policy.capacity:
        capacity = []
        for entry in policy.capacity:
            try:
                capacity.append(Capacity.model_validate(with_tier_shares(entry, given)))
            except ValidationError as exc:
                log.warning("tier_shares_refused", capacity=entry.name, error=str(exc.errors()[0]["msg"]))
                capacity.append(entry)
        update["capacity"] = capacity
    return policy.model_copy(update=update)


class TierStore:
    """Set, clear and list run-time tiers (management side, synchronous)."""

    def __init__(self, client: redis.Redis | RedisCluster) -> None:
        self.client = client

    def set(self, name: str, tier: Tier) -> None:
        """Store ``tier`` under ``name``; every enforcer uses it within a second."""
        bare = tier.model_copy(update={"capacity_shares": None})  # capacities are the whole policy's to check
        Policy(tiers={name: bare}, anonymous_tier=name, default_tier=name)  # the name must be valid too
        self._write(name, tier.model_dump_json(exclude_defaults=True))

    def clear(self, name: str) -> bool:
        return bool(self._write(name, None))

    def get(self, name: str) -> Tier | None:
        raw = self.client.hget(TIERS_HASH, name)
        return Tier.model_validate_json(raw) if raw else None

    def all(self) -> dict[str, Tier]:
        stored = cast("dict[bytes, bytes]", self.client.hgetall(TIERS_HASH))  # never decoded: see changes.as_bytes
        return {name.decode(): Tier.model_validate_json(raw) for name, raw in stored.items()}

    def _write(self, name: str, value: str | None) -> int:
        def write(pipe: redis.client.Pipeline) -> None:
            if value is None:
                pipe.hdel(TIERS_HASH, name)
            else:
                pipe.hset(TIERS_HASH, name, value)

        return commit_change(self.client, f"tier {name}", write)[0]
