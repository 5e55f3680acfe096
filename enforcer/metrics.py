"""Prometheus metrics the enforcer exports (served by ``ratewarden.enforcer.metrics_app`` or the
Django view ``ratewarden.enforcer.django.metrics_view``, or any prometheus-client exposition).

No label carries a client: tiers come from the policy (bounded, the rest ``other``), outcomes
are fixed.

Every decision is counted and timed on the request path, so that part is kept cheap: each
thread adds to plain counts of its own (no lock, and no update lost between threads), and a
scrape sums them. prometheus-client's locked counter and histogram cost ~1 µs per decision;
this costs ~0.2 µs.
"""

from __future__ import annotations

import threading
import weakref
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .decision import Decision

__all__ = ["DecisionStats", "MAX_TIER_LABELS", "OTHER_TIER", "OUTCOMES", "REDIS_FAILURES", "REFUNDS"]

REDIS_FAILURES = Counter("ratewarden_redis_failures", "Decisions Redis failed to answer in budget")
REFUNDS = Counter("ratewarden_cluster_refunds",
                  "Requests denied on one Redis node whose other nodes gave back what they counted")

OUTCOMES = ("allowed", "denied", "denied_locally", "degraded")
_ALLOWED, _DENIED, _DENIED_LOCALLY, _DEGRADED = range(len(OUTCOMES))
# a decision takes ~0.1 ms decided locally and 0.2-5 ms through Redis; the budget (50 ms) ends it
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1)
MAX_TIER_LABELS = 20  # tiers beyond these (run-time tiers pile up) are labelled OTHER_TIER
OTHER_TIER = "other"
_SLOTS = (MAX_TIER_LABELS + 1) * len(OUTCOMES)  # slot = tier index * outcomes + outcome; tier 0 is "other"


class _Shard:
    """One thread's counts: per slot, decisions per bucket (the last is +Inf) and their seconds."""

    __slots__ = ("buckets", "seconds", "shadow_denied")

    def __init__(self) -> None:
        self.buckets = [[0] * (len(BUCKETS) + 1) for _ in range(_SLOTS)]
        self.seconds = [0.0] * _SLOTS
        self.shadow_denied = 0


class DecisionStats:
    """One enforcer's decisions by tier and outcome, with how long each took: the samples of
    ``ratewarden_decisions_total`` and ``ratewarden_decision_duration_seconds``."""

    def __init__(self, tiers: Iterable[str] = ()) -> None:
        self._tiers: dict[str, int] = {}  # tier -> its first slot
        self._shards: list[_Shard] = []
        self._local = threading.local()
        self._lock = threading.Lock()  # taken once per thread to add its shard, and to add tiers
        self.add(tiers)
        _everyone.add(self)

    def add(self, tiers: Iterable[str]) -> None:
        """Give ``tiers`` labels of their own while there are fewer than ``MAX_TIER_LABELS``.

        Locked: WSGI threads that see the same run-time tier change call it together, and two
        tiers given the same slot would count as one."""
        with self._lock:
            for tier in tiers:
                if tier not in self._tiers and len(self._tiers) < MAX_TIER_LABELS:
                    self._tiers[tier] = (len(self._tiers) + 1) * len(OUTCOMES)

    def _shard(self) -> _Shard:
        shard = _Shard()
        with self._lock:
            self._shards.append(shard)
        self._local.shard = shard
        return shard

    def observe(self, decision: Decision, seconds: float) -> None:
        """Count ``decision``, made in ``seconds``."""
        try:
            shard: _Shard = self._local.shard
        except AttributeError:
            shard = self._shard()
        if decision.degraded:
            outcome = _DEGRADED
        elif decision.allowed:
            outcome = _ALLOWED
        else:
            outcome = _DENIED_LOCALLY if decision.local else _DENIED
        slot = self._tiers.get(decision.tier, 0) + outcome
        shard.buckets[slot][bisect_left(BUCKETS, seconds)] += 1
        shard.seconds[slot] += seconds

    def shadow_denied(self) -> None:
        """Count an admitted request a shadow rule would have denied."""
        try:
            shard: _Shard = self._local.shard
        except AttributeError:
            shard = self._shard()
        shard.shadow_denied += 1

    def totals(self) -> tuple[dict[tuple[str, str], tuple[list[int], float]], int]:
        """Per (tier, outcome): decisions per bucket and their seconds, summed over threads; and the
        shadow denials. Every tier with a label of its own is there, counted or not."""
        with self._lock:
            shards = list(self._shards)
            tiers = {OTHER_TIER: 0, **self._tiers}
        totals: dict[tuple[str, str], tuple[list[int], float]] = {}
        for tier, first in tiers.items():
            for outcome, name in enumerate(OUTCOMES):
                slot = first + outcome
                buckets = [sum(counts) for counts in zip(*(shard.buckets[slot] for shard in shards), strict=True)]
                totals[tier, name] = (buckets or [0] * (len(BUCKETS) + 1),
                                      sum(shard.seconds[slot] for shard in shards))
        return totals, sum(shard.shadow_denied for shard in shards)


_everyone: weakref.WeakSet[DecisionStats] = weakref.WeakSet()


class _DecisionCollector(Collector):
    """Sums every live enforcer's :class:`DecisionStats` at scrape time."""

    def collect(self) -> Iterator[Metric]:
        counted = {name: 0 for name in OUTCOMES}
        shadow_denied = 0
        series: dict[tuple[str, str], tuple[list[int], float]] = {}
        for stats in list(_everyone):
            totals, shadow = stats.totals()
            shadow_denied += shadow
            for labels, (buckets, seconds) in totals.items():
                known = series.get(labels)
                if known is not None:
                    buckets = [a + b for a, b in zip(known[0], buckets, strict=True)]
                    seconds += known[1]
                series[labels] = (buckets, seconds)
        decisions = CounterMetricFamily("ratewarden_decisions", "Requests decided, by outcome (shadow_denied: "
                                        "admitted, but a shadow rule would have denied)", labels=["outcome"])
        latency = HistogramMetricFamily(
            "ratewarden_decision_duration_seconds",
            "Time to decide a request (plan, local checks and the Redis round trip), by tier and outcome",
            labels=["tier", "outcome"])
        for (tier, outcome), (buckets, seconds) in sorted(series.items()):
            cumulative, running = [], 0
            for bound, count in zip((*map(str, BUCKETS), "+Inf"), buckets, strict=True):
                running += count
                cumulative.append((bound, running))
            latency.add_metric([tier, outcome], cumulative, seconds)
            counted[outcome] += running
        for outcome, count in {**counted, "shadow_denied": shadow_denied}.items():
            decisions.add_metric([outcome], count)
        yield decisions
        yield latency


REGISTRY.register(_DecisionCollector())
