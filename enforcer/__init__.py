"""ratewarden's enforcer: distributed, tier-aware rate limits decided in one Redis round trip.

Typical use with FastAPI::

    from ratewarden.enforcer import Enforcer, load_policy
    from ratewarden.enforcer.asgi import RatewardenMiddleware

    app.add_middleware(RatewardenMiddleware, enforcer=Enforcer(load_policy("policy.yaml")))

This package imports neither Faust, ClickHouse nor Grafana.
"""

from .apikeys import ApiKeyRecord, ApiKeyStore
from .decision import Decision
from .engine import Enforcer, SyncEnforcer
from .exposition import metrics_app
from .identity import Identity
from .loader import PolicyError, load_policy, policy_from_mapping
from .overrides import Override, OverrideStore
from .policy import Algorithm, Endpoint, Policy, Quotas, Rule, Scope, Tier
from .settings import EnforcerSettings

__all__ = [
    "Algorithm", "ApiKeyRecord", "ApiKeyStore", "Decision", "Endpoint", "Enforcer", "EnforcerSettings",
    "Identity", "Override", "OverrideStore", "Policy", "PolicyError", "Quotas", "Rule", "Scope", "SyncEnforcer", "Tier",
    "load_policy", "metrics_app", "policy_from_mapping",
]
