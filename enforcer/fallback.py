"""The per-process limiter used while Redis is unavailable (fail-open tiers).

Every rule becomes an in-memory token bucket holding ``share`` of its limit;
concurrency rules count this process's in-flight requests. Quotas are not
counted while degraded (a calendar quota barely moves during an outage), nor
are shadow rules (they never deny) and rules that count only some responses.
"""

from __future__ import annotations

import time

from .contract import DEFERRED, SHADOW, spec_of
from .plan import Plan

__all__ = ["FallbackLimiter"]

_MAX_KEYS = 100_000


class FallbackLimiter:
    """Approximate, local, all-or-nothing limits keyed like the Redis ones."""

    def __init__(self, share: float = 1.0) -> None:
        self.share = share
        self._buckets: dict[str, list[float]] = {}
        self._in_flight: dict[str, int] = {}

    def decide(self, plan: Plan, keys: list[str]) -> tuple[bool, int, float]:
        """(allowed, index of the deciding rule or -1, retry-after seconds)."""
        now = time.monotonic()
        if len(self._buckets) > _MAX_KEYS:
            self._buckets.clear()
        checks: list[tuple[str, float | None]] = []  # (key, tokens now); None: a concurrency slot
        for i, (rule, key) in enumerate(zip(plan.rules, keys, strict=True)):
            model = spec_of(rule.code).fallback
            if model == "uncounted" or rule.flags & (SHADOW | DEFERRED):
                continue
            if model == "in_flight":
                if self._in_flight.get(key, 0) + 1 > max(1, int(rule.limit * self.share)):
                    return False, i, 1.0
                checks.append((key, None))
                continue
            capacity = max(1.0, (rule.capacity or rule.limit) * self.share)
            rate = rule.limit * self.share / rule.period_s
            bucket = self._buckets.get(key)
            tokens = capacity if bucket is None else min(capacity, bucket[0] + (now - bucket[1]) * rate)
            if tokens < plan.cost:
                return False, i, (plan.cost - tokens) / rate
            checks.append((key, tokens))
        for key, available in checks:
            if available is None:
                self._in_flight[key] = self._in_flight.get(key, 0) + 1
            else:
                self._buckets[key] = [available - plan.cost, now]
        return True, -1, 0.0

    def release(self, key: str) -> None:
        count = self._in_flight.get(key, 0) - 1
        if count > 0:
            self._in_flight[key] = count
        else:
            self._in_flight.pop(key, None)
