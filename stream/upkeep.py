"""The worker's upkeep of the enforcers' Redis: lapsed overrides are removed on a timer.

Penalties are expiring overrides; without this, lapsed ones would stay in ``rw:{ctl}:overrides``,
which every enforcer reads whole on each reload. Operators' expiring overrides go the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import redis
from mode import Service
from redis.exceptions import RedisClusterException

from ratewarden.enforcer.logs import get_logger
from ratewarden.enforcer.overrides import OverrideStore

__all__ = ["OverridePurger"]

log = get_logger("ratewarden.stream")


class OverridePurger(Service):
    """Every ``interval_s``, removes the overrides that lapsed (one pass removes all of them);
    the first pass also indexes overrides written before the expiry index existed.

    ``store`` makes the store on first use (in a thread: a cluster client reads its slot map
    as it is made)."""

    def __init__(self, store: Callable[[], OverrideStore], interval_s: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._make_store = store
        self.interval_s = interval_s
        self.passes = 0  # completed passes
        self.purged = 0
        self._indexed = False

    async def on_start(self) -> None:
        self.add_future(self._run())

    async def _run(self) -> None:
        async for _ in self.itertimer(self.interval_s, name="override_purge"):
            await self.purge_once()

    async def purge_once(self) -> int:
        """One pass; Redis away is logged and left to the next pass. Returns how many went."""
        try:
            removed = await asyncio.to_thread(self._purge)
        except (redis.RedisError, RedisClusterException, OSError) as exc:
            log.warning("override_purge_failed", error=type(exc).__name__)
            return 0
        self.passes += 1
        self.purged += removed
        if removed:
            log.info("overrides_purged", removed=removed, total=self.purged)
        return removed

    def _purge(self) -> int:
        store = self._make_store()
        if not self._indexed:
            indexed = store.index_expiring()
            if indexed:
                log.info("overrides_indexed", indexed=indexed)
            self._indexed = True
        return store.purge_expired()
