"""The request lifecycle every framework adapter shares, without I/O (as ``EnforcerCore``).

An adapter (``asgi``, ``wsgi``, ``django``, the DRF throttles) keeps only its framework's glue:
reading the caller's facts from its request, finding the route, calling the enforcer, writing
the response. Everything between is here, once::

    gate = Gate(enforcer, publisher=publisher_for(enforcer))
    ip, api_key = gate.caller(peer, x_forwarded_for, forwarded, key_header_value)  # or gate.environ_caller(environ)
    identity = enforcer.identify(ip=ip, api_key=api_key, user=gate.user_id(user))  # awaited on asyncio
    gate.assign_tier(identity, tier)            # what a tier_resolver returned, if one is set
    decision = enforcer.decide(identity, route_label(method, template), route_limits)
    if not decision.allowed:
        status, headers, body = gate.denial(decision)   # 429/503, problem+json, Retry-After
    else:
        headers = gate.headers(decision)                # RateLimit-Policy, RateLimit, X-RateLimit-*
    gate.publish(decision, method=..., path=..., user_agent=..., status=..., started=...)  # after the response

Headers are ``(bytes, bytes)`` pairs with lower-case names, as ASGI writes them.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple

from .decision import Decision
from .engine import EnforcerCore
from .headers import Headers, rate_limit_headers
from .identity import Identity, bearer_token
from .logs import get_logger
from .problem import problem_body
from .publisher import EventPublisher
from .routes import UNMATCHED_ROUTE, route_label

__all__ = ["Gate", "Denial", "Resolver", "publisher_for", "route_label", "UNMATCHED_ROUTE"]

log = get_logger("ratewarden.enforcer")

Resolver = Callable[[Any], "object | Awaitable[object]"]
"""Called with the framework's request (ASGI scope, WSGI environ, Django request); returns a
user id or a tier name, or None. Adapters on asyncio also accept coroutine functions."""

_PROBLEM_TYPE = (b"content-type", b"application/problem+json")
_publishers: weakref.WeakKeyDictionary[EnforcerCore, EventPublisher | None] = weakref.WeakKeyDictionary()


class Denial(NamedTuple):
    """The response to a denied request: its status, headers (content type and length included) and body."""

    status: int
    headers: Headers
    body: bytes


def publisher_for(enforcer: EnforcerCore) -> EventPublisher | None:
    """The one event publisher of ``enforcer`` (None without ``RATEWARDEN_KAFKA_BOOTSTRAP``), shared by
    every adapter instance built on it: Litestar, for one, builds a middleware per route. Not started."""
    if enforcer not in _publishers:
        if enforcer.settings.kafka_bootstrap:
            _publishers[enforcer] = EventPublisher(enforcer.settings)
        else:
            _publishers[enforcer] = None
            log.info("events_off", reason="no Kafka bootstrap configured (RATEWARDEN_KAFKA_BOOTSTRAP)")
    return _publishers[enforcer]


class Gate:
    """What an adapter needs between its framework and the enforcer, computed once per process:
    the API key header's name in each form, the header settings, the event's service and instance.

    ``user_resolver`` and ``tier_resolver`` are kept here for the adapter to call with its request;
    ``publisher`` receives the request events (None: none are built).
    """

    def __init__(self, enforcer: EnforcerCore, *, publisher: EventPublisher | None = None,
                 user_resolver: Resolver | None = None, tier_resolver: Resolver | None = None) -> None:
        settings = enforcer.settings
        self.enforcer = enforcer
        self.publisher = publisher
        self.user_resolver = user_resolver
        self.tier_resolver = tier_resolver
        header = settings.api_key_header.lower()
        self.key_header: bytes = header.encode("latin-1")  # as ASGI names headers
        self.key_environ = "HTTP_" + header.upper().replace("-", "_")  # as WSGI and Django's META name them
        self._bearer = header == "authorization"
        self._draft, self._legacy, self._shadow = settings.draft_headers, settings.legacy_headers, \
            settings.shadow_headers
        self._service, self._instance = settings.service_name, settings.instance_id
        self._unknown_tiers: set[str] = set()

    # -- the caller ----------------------------------------------------------

    def caller(self, peer: str | None, x_forwarded_for: str | None, forwarded: str | None,
               key_value: str | None) -> tuple[str, str | None]:
        """(client IP, API key) from the socket peer, the forwarding headers (believed from trusted
        proxies only) and the API key header's value (a Bearer token for ``Authorization``)."""
        ip = self.enforcer.ips.resolve(peer, x_forwarded_for, forwarded)
        if key_value and self._bearer:
            key_value = bearer_token(key_value)
        return ip, key_value or None

    def environ_caller(self, environ: Mapping[str, Any]) -> tuple[str, str | None]:
        """:meth:`caller` from a WSGI environ (Django's ``request.META`` is one)."""
        return self.caller(environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR"),
                           environ.get("HTTP_FORWARDED"), environ.get(self.key_environ))

    @staticmethod
    def user_id(user: object) -> str | None:
        """A resolver's user as the identity's user id: None or empty is no user."""
        if user is None or user == "":
            return None
        return user if isinstance(user, str) else str(user)

    def assign_tier(self, identity: Identity, tier: object) -> None:
        """Put the caller in ``tier`` (what a ``tier_resolver`` returned: None keeps its tier).

        A tier the policy does not have is logged once and ignored (never a 500), and a run-time
        override naming a tier for this client still wins.
        """
        if tier is None or tier == "":
            return
        name = str(tier)
        enforcer = self.enforcer
        if name not in enforcer.policy.tiers:
            if name not in self._unknown_tiers and len(self._unknown_tiers) < 100:
                self._unknown_tiers.add(name)
                log.warning("unknown_tier", tier=name, source="tier_resolver", tiers=",".join(enforcer.policy.tiers))
            return
        override = enforcer.live.override(identity.client_id) if enforcer.live.overrides else None
        if override is not None and override.tier in enforcer.policy.tiers:
            return
        identity.tier = name

    # -- the response --------------------------------------------------------

    def headers(self, decision: Decision) -> Headers:
        """The rate-limit headers of an admitted request (empty when no rule applied)."""
        return rate_limit_headers(decision, draft=self._draft, legacy=self._legacy, shadow=self._shadow)

    def denial(self, decision: Decision) -> Denial:
        """The 429 (or 503) answer to a denied request: RFC 9457 problem+json with the rate-limit headers."""
        body = problem_body(decision)
        headers = [_PROBLEM_TYPE, (b"content-length", b"%d" % len(body)), *self.headers(decision)]
        return Denial(decision.status, headers, body)

    # -- the event -----------------------------------------------------------

    def publish(self, decision: Decision, *, method: str, path: str, user_agent: str | None, status: int,
                started: float) -> None:
        """Queue the request's event (``started``: ``time.perf_counter()`` when the request came in).
        Nothing for exempt routes, decisions without a caller, or without a publisher."""
        if self.publisher is None or decision.identity is None or decision.exempt:
            return
        self.publisher.publish_decision(decision, method, path, user_agent, status,
                                        (time.perf_counter() - started) * 1000, self._service, self._instance)
