"""DRF throttle classes on ratewarden's engine, with DRF's public contract
(``allow_request(request, view)``, ``wait()``), so switching is one import::

    REST_FRAMEWORK = {"DEFAULT_THROTTLE_CLASSES": ["ratewarden.enforcer.django.throttling.RatewardenThrottle"]}

``RatewardenThrottle`` applies the policy (tiers, endpoint rules, quotas).
``SimpleRateThrottle``, ``UserRateThrottle``, ``AnonRateThrottle`` and ``ScopedRateThrottle``
are DRF's own, attribute for attribute and method for method (``rate``, ``scope``,
``THROTTLE_RATES``, ``get_rate``, ``parse_rate``, ``get_cache_key``, ``get_ident`` with
``NUM_PROXIES``, ``throttle_success``/``throttle_failure``, ``wait``), and need no policy file;
but they count atomically in Redis (no read-then-write race), count exactly the period written
(``"100/day"``, ``"5/15m"``; ``"month"`` is refused instead of read as minute) and do not stop
counting when another throttle denies first.
"""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from ratewarden.extras import require

from .. import rates
from ..decision import Decision
from ..plan import RouteLimits
from ..policy import Algorithm, Rule, Scope
from .conf import get_enforcer, identify_request, route_of
from .middleware import DECISION_ATTR

require("django", "rest_framework", feature="ratewarden.enforcer.django.throttling (DRF throttles)")

from rest_framework.settings import api_settings  # noqa: E402 - after the hint for a missing extra
from rest_framework.throttling import BaseThrottle  # noqa: E402 - after the hint for a missing extra

__all__ = ["AnonRateThrottle", "RatewardenThrottle", "ScopedRateThrottle", "SimpleRateThrottle", "UserRateThrottle",
           "parse_rate"]


def parse_rate(rate: str | None) -> tuple[int, float] | tuple[None, None]:
    """``"100/day"`` -> (100, 86400.0); also ``"5/15m"``, ``"1000/hr"``, ``"10 per second"`` (the
    ``limits`` grammar of ``ratewarden.enforcer.rates``); None -> (None, None) as DRF's.
    Raises ImproperlyConfigured naming the rate."""
    if rate is None:
        return (None, None)
    try:
        parsed = rates.parse_rate(rate)
    except ValueError as exc:
        raise ImproperlyConfigured(f"invalid throttle rate: {exc}") from None
    return parsed.limit, parsed.period_s


class RatewardenThrottle(BaseThrottle):
    """Decides with the policy's rules and quotas for the caller's tier on this route."""

    policy_required = True  # the drop-in classes bring their own rule

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
        return self.decide(request, limits, limits.key(request) if limits is not None and limits.key else None)

    def decide(self, request: Any, limits: RouteLimits | None, custom: object) -> bool:
        """Decide ``request`` (the policy's rules and ``limits``; ``custom`` keys their ``custom``
        scope) and keep the decision for ``wait()`` and the middleware's headers."""
        enforcer = get_enforcer(policy_required=self.policy_required)
        django_request = getattr(request, "_request", request)
        identity = identify_request(enforcer, request)
        if custom is not None:
            identity.set_custom(custom)
        decision = enforcer.decide(identity, route_of(django_request), limits)
        self.decision = decision
        previous: Decision | None = getattr(django_request, DECISION_ATTR, None)
        # the response's headers describe the most constrained decision
        if previous is None or not decision.allowed or (previous.allowed and decision.remaining < previous.remaining):
            setattr(django_request, DECISION_ATTR, decision)
        return decision.allowed

    def wait(self) -> float | None:
        """Seconds until a denied request would be admitted (DRF sends them as ``Retry-After``);
        None when the last request was admitted."""
        if self.decision is None or self.decision.allowed:
            return None
        return self.decision.retry_after_s


class _DefaultRates:
    """``THROTTLE_RATES`` of a class that sets none: DRF's ``DEFAULT_THROTTLE_RATES``, read when used
    (DRF reads it once at import, so a changed setting went unseen until a restart)."""

    def __get__(self, instance: object, owner: type) -> dict[str, str | None]:
        return api_settings.DEFAULT_THROTTLE_RATES


class SimpleRateThrottle(RatewardenThrottle):
    """DRF's ``SimpleRateThrottle``: one rate (``rate``, else ``THROTTLE_RATES[scope]``) per
    ``get_cache_key(request, view)``, which must be overridden and may return None for a request
    that is not throttled. The cache key is the counter's key, so two classes returning the same
    key share a count, as they share DRF's cache entry."""

    policy_required = False
    cache_format = "throttle_%(scope)s_%(ident)s"
    scope: str | None = None
    rate: str | None = None
    THROTTLE_RATES: Any = _DefaultRates()
    algorithm: Algorithm = Algorithm.sliding_window_log  # DRF's history of timestamps, made exact
    num_requests: int | None
    duration: float | None
    key: str | None

    def __init__(self) -> None:
        super().__init__()
        if not getattr(self, "rate", None):
            self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        """A unique key for the caller (None: the request is not throttled). Must be overridden."""
        raise NotImplementedError(".get_cache_key() must be overridden")

    def get_rate(self) -> str | None:
        if not getattr(self, "scope", None):
            raise ImproperlyConfigured(f"You must set either `.scope` or `.rate` for '{type(self).__name__}' throttle")
        try:
            return self.THROTTLE_RATES[self.scope]
        except KeyError:
            raise ImproperlyConfigured(f"No default throttle rate set for '{self.scope}' scope") from None

    def parse_rate(self, rate: str | None) -> tuple[int, float] | tuple[None, None]:
        """(requests, seconds) of ``rate``; (None, None) for None (no throttling)."""
        return parse_rate(rate)

    def get_ident(self, request: Any) -> str:
        """The client's address, as DRF finds it when ``NUM_PROXIES`` is set: the address that many
        hops from the right of ``X-Forwarded-For``. When ``RATEWARDEN_TRUSTED_PROXIES`` is set, or
        neither is, ratewarden's resolver decides (forwarding headers believed from trusted proxies
        only; DRF would otherwise believe any client's ``X-Forwarded-For``)."""
        enforcer = get_enforcer()
        num_proxies = api_settings.NUM_PROXIES
        meta = request.META
        if num_proxies is not None and not enforcer.settings.trusted_proxies:
            xff = meta.get("HTTP_X_FORWARDED_FOR")
            if num_proxies == 0 or not xff:
                return str(meta.get("REMOTE_ADDR", ""))
            addresses = xff.split(",")
            return addresses[-min(num_proxies, len(addresses))].strip()
        return enforcer.ips.resolve(meta.get("REMOTE_ADDR"), meta.get("HTTP_X_FORWARDED_FOR"),
                                    meta.get("HTTP_FORWARDED"))

    def allow_request(self, request: Any, view: Any) -> bool:
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        # the cache key counts, as in DRF
        return self.throttle_success() if self.decide(request, self._limits(), self.key) else self.throttle_failure()

    def throttle_success(self) -> bool:
        """Called when the request is admitted (DRF's hook; the count is already in Redis)."""
        return True

    def throttle_failure(self) -> bool:
        """Called when the request is throttled (DRF's hook)."""
        return False

    def _limits(self) -> RouteLimits:
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", f"drf-{self.scope or type(self).__name__}")[:64]
        cached = (name, self.rate, self.algorithm)
        limits = _LIMITS.get(cached)
        if limits is None:  # one RouteLimits per distinct rate, so the enforcer's plans are reused
            limit, period = self.parse_rate(self.rate)
            assert limit is not None and period is not None
            rule = Rule(name=name, algorithm=self.algorithm, limit=limit, period=period, scope=[Scope.custom])
            limits = _LIMITS[cached] = RouteLimits((rule,), standalone=True)
        return limits


_LIMITS: dict[tuple[object, ...], RouteLimits] = {}


def _user_ident(throttle: SimpleRateThrottle, request: Any) -> object:
    user = getattr(request, "user", None)
    return user.pk if user and user.is_authenticated else throttle.get_ident(request)


class AnonRateThrottle(SimpleRateThrottle):
    """Anonymous callers only, per IP, rate ``DEFAULT_THROTTLE_RATES['anon']``."""

    scope = "anon"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        user = getattr(request, "user", None)
        if user and user.is_authenticated:
            return None  # only unauthenticated requests are throttled
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class UserRateThrottle(SimpleRateThrottle):
    """Per user (per IP for anonymous callers), rate ``DEFAULT_THROTTLE_RATES['user']``."""

    scope = "user"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": _user_ident(self, request)}


class ScopedRateThrottle(SimpleRateThrottle):
    """Per view scope (``view.throttle_scope``) and user or IP; views without a scope are not limited."""

    scope_attr = "throttle_scope"

    def __init__(self) -> None:  # the rate is known once the view is (as DRF's)
        RatewardenThrottle.__init__(self)

    def allow_request(self, request: Any, view: Any) -> bool:
        self.scope = getattr(view, self.scope_attr, None)
        if not self.scope:
            return True
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": _user_ident(self, request)}
