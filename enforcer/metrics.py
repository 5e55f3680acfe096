"""Prometheus metrics the enforcer exports (served by ``ratewarden.enforcer.metrics_app`` or the
Django view ``ratewarden.enforcer.django.metrics_view``, or any prometheus-client exposition).

No label carries a client: tiers come from the policy (bounded, the rest ``other``), outcomes
are fixed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import Counter, Histogram

if TYPE_CHECKING:
    from .decision import Decision

__all__ = ["DecisionTimers", "MAX_TIER_LABELS", "OTHER_TIER"]

DECISIONS = Counter(
    "ratewarden_decisions", "Requests decided, by outcome", ["outcome"]
)
ALLOWED = DECISIONS.labels("allowed")
DENIED = DECISIONS.labels("denied")
DENIED_LOCALLY = DECISIONS.labels("denied_locally")
DEGRADED = DECISIONS.labels("degraded")
SHADOW_DENIED = DECISIONS.labels("shadow_denied")  # admitted, but a shadow rule would have denied
REDIS_FAILURES = Counter("ratewarden_redis_failures", "Decisions Redis failed to answer in budget")
REFUNDS = Counter("ratewarden_cluster_refunds",
                  "Requests denied on one Redis node whose other nodes gave back what they counted")

# a decision takes ~0.1 ms decided locally and 0.2-5 ms through Redis; the budget (50 ms) ends it
DECISION_SECONDS = Histogram(
    "ratewarden_decision_duration_seconds",
    "Time to decide a request (plan, local checks and the Redis round trip), by tier and outcome",
    ["tier", "outcome"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1))
MAX_TIER_LABELS = 20  # tiers beyond these (run-time tiers pile up) are labelled OTHER_TIER
OTHER_TIER = "other"


class _TierTimers:
    """The histogram's children of one tier, bound once (no label lookup per request)."""

    __slots__ = ("allowed", "denied", "denied_locally", "degraded")

    def __init__(self, tier: str) -> None:
        self.allowed = DECISION_SECONDS.labels(tier, "allowed")
        self.denied = DECISION_SECONDS.labels(tier, "denied")
        self.denied_locally = DECISION_SECONDS.labels(tier, "denied_locally")
        self.degraded = DECISION_SECONDS.labels(tier, "degraded")


class DecisionTimers:
    """Observes decision latencies into ``ratewarden_decision_duration_seconds`` with bounded tier labels."""

    __slots__ = ("_by_tier", "_other")

    def __init__(self, tiers: Iterable[str] = ()) -> None:
        self._by_tier: dict[str, _TierTimers] = {}
        self._other = _TierTimers(OTHER_TIER)
        self.add(tiers)

    def add(self, tiers: Iterable[str]) -> None:
        """Give ``tiers`` labels of their own while there are fewer than ``MAX_TIER_LABELS``."""
        for tier in tiers:
            if tier not in self._by_tier and len(self._by_tier) < MAX_TIER_LABELS:
                self._by_tier[tier] = _TierTimers(tier)

    def observe(self, decision: Decision, seconds: float) -> None:
        timers = self._by_tier.get(decision.tier) or self._other
        if decision.degraded:
            timers.degraded.observe(seconds)
        elif decision.allowed:
            timers.allowed.observe(seconds)
        elif decision.local:
            timers.denied_locally.observe(seconds)
        else:
            timers.denied.observe(seconds)
