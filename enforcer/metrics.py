"""Prometheus counters the enforcer exports (scrape them with prometheus-client's usual exposition)."""

from __future__ import annotations

from prometheus_client import Counter

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
