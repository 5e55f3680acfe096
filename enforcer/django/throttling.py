"""DRF throttle classes on ratewarden's engine, with DRF's public contract
(``allow_request(request, view)``, ``wait()``), so switching is one import::

    REST_FRAMEWORK = {"DEFAULT_THROTTLE_CLASSES": ["ratewarden.enforcer.django.throttling.RatewardenThrottle"]}

``RatewardenThrottle`` applies the policy (tiers, endpoint rules, quotas).
``UserRateThrottle``, ``AnonRateThrottle`` and ``ScopedRateThrottle`` mirror
DRF's own, reading ``DEFAULT_THROTTLE_RATES`` the same way, but count atomically
in Redis (no read-then-write race), count exactly the period written
(``"100/day"``, ``"5/15m"``; ``"month"`` is refused instead of read as minute)
and do not stop counting when another throttle denies first.
"""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from ratewarden.extras import require

from ..decision import Decision
from ..durations import parse_duration
from ..plan import RouteLimits
from ..policy import Algorithm, Rule, Scope
from .conf import get_enforcer, identify_request, route_of
from .middleware import DECISION_ATTR

require("django", "rest_framework", feature="ratewarden.enforcer.django.throttling (DRF throttles)")

from rest_framework.settings import api_settings  # noqa: E402 - after the hint for a missing extra
from rest_framework.throttling import BaseThrottle  # noqa: E402 - after the hint for a missing extra

__all__ = ["RatewardenThrottle", "UserRateThrottle", "AnonRateThrottle", "ScopedRateThrottle", "parse_rate"]

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\S+)\s*$")


def parse_rate(rate: str) -> tuple[int, float]:
    """``"100/day"`` -> (100, 86400.0); also ``"5/15m"``, ``"10/s"``. Raises ImproperlyConfigured."""
    match = _RATE.match(rate or "")
    if not match:
        raise ImproperlyConfigured(f"invalid throttle rate {rate!r}: expected 'N/period' such as '100/day' or '5/15m'")
    try:
        return int(match.group(1)), parse_duration(match.group(2))
    except ValueError as exc:
        raise ImproperlyConfigured(f"invalid throttle rate {rate!r}: {exc}") from None


class RatewardenThrottle(BaseThrottle):
    """Decides with the policy's rules and quotas for the caller's tier on this route."""

    def __init__(self) -> None:
        self.decision: Decision | None = None

    def route_limits(self, request: Any, view: Any) -> RouteLimits | None:
        """Extra rules for this request (None: the policy's rules only); a ``key`` on them is called
        with the DRF request and keys their ``custom`` scope."""
        return None

    def allow_request(self, request: Any, view: Any) -> bool:
        limits = self.route_limits(request, view)
        if limits is not None and not limits.rules:
            return True
        enforcer = get_enforcer()
        django_request = getattr(request, "_request", request)
        identity = identify_request(enforcer, request)
        if limits is not None and limits.key is not None:
            identity.set_custom(limits.key(request))
        decision = enforcer.decide(identity, route_of(django_request), limits)
        self.decision = decision
        previous: Decision | None = getattr(django_request, DECISION_ATTR, None)
        # the response's headers describe the most constrained decision
        if previous is None or not decision.allowed or (previous.allowed and decision.remaining < previous.remaining):
            setattr(django_request, DECISION_ATTR, decision)
        return decision.allowed

    def wait(self) -> float | None:
        if self.decision is None or self.decision.allowed:
            return None
        return self.decision.retry_after_s


class _RateThrottle(RatewardenThrottle):
    """A single DRF-style rate, read from ``DEFAULT_THROTTLE_RATES[scope]`` or ``rate``."""

    scope: str | None = None
    rate: str | None = None
    dimension: Scope = Scope.user  # the user, else the client IP (as DRF's ident)
    algorithm: Algorithm = Algorithm.sliding_window_log  # DRF's history of timestamps, made exact

    def get_rate(self, view: Any) -> str | None:
        if self.rate is not None:
            return self.rate
        rates = api_settings.DEFAULT_THROTTLE_RATES
        if self.scope not in rates:
            raise ImproperlyConfigured(f"no default throttle rate set for {self.scope!r} scope")
        return rates[self.scope]

    def applies(self, request: Any, view: Any) -> bool:
        return True

    def route_limits(self, request: Any, view: Any) -> RouteLimits | None:
        if not self.applies(request, view):
            return RouteLimits(standalone=True)
        rate = self.get_rate(view)
        if rate is None:
            return RouteLimits(standalone=True)
        key = (self.scope, rate, self.algorithm, self.dimension)
        limits = _LIMITS.get(key)
        if limits is None:  # one RouteLimits per distinct rate, so the enforcer's plans are reused
            limit, period = parse_rate(rate)
            rule = Rule(name=f"drf-{self.scope}", algorithm=self.algorithm, limit=limit, period=period,
                        scope=[self.dimension])
            limits = _LIMITS[key] = RouteLimits((rule,), standalone=True)
        return limits


_LIMITS: dict[tuple[object, ...], RouteLimits] = {}


class UserRateThrottle(_RateThrottle):
    """Per user (per IP for anonymous callers), rate ``DEFAULT_THROTTLE_RATES['user']``."""

    scope = "user"


class AnonRateThrottle(_RateThrottle):
    """Anonymous callers only, per IP, rate ``DEFAULT_THROTTLE_RATES['anon']``."""

    scope = "anon"
    dimension = Scope.ip

    def applies(self, request: Any, view: Any) -> bool:
        user = getattr(request, "user", None)
        return not (user is not None and user.is_authenticated)


class ScopedRateThrottle(_RateThrottle):
    """Per view scope (``view.throttle_scope``) and user or IP; views without a scope are not limited."""

    def applies(self, request: Any, view: Any) -> bool:
        self.scope = getattr(view, "throttle_scope", None)
        return self.scope is not None
