"""Limits attached to one route: ``@limit(...)`` on an endpoint, read back by every adapter.

The same decorator serves FastAPI, Starlette, Litestar, Flask and Django views: it only marks
the function; the adapter finds the mark when it first resolves the route and evaluates the
rules in the same script call as the policy's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from .plan import KeyFunction, RouteLimits
from .policy import Rule, rules_from

__all__ = ["LIMITS_ATTR", "ROUTE_SCOPE", "LimitsByObject", "limit", "route_limits", "limits_of", "merge_limits"]

LIMITS_ATTR = "__ratewarden_limits__"
ROUTE_SCOPE = ("client", "endpoint")  # a route's rule counts per caller and route unless it names its scope

Endpoint = TypeVar("Endpoint")


def route_limits(*rules: Rule | str | dict[str, Any], cost: int | None = None, exempt: bool = False,
                 key: KeyFunction | None = None, scope: Iterable[str] = ROUTE_SCOPE) -> RouteLimits:
    """The :class:`RouteLimits` of rate strings (``"10/minute;100/hour"``), mappings as in a
    policy file or rules; ``scope`` is the scope of those that name none."""
    if cost is not None and cost < 1:
        raise ValueError(f"cost must be at least 1, got {cost}")
    return RouteLimits(rules_from(*rules, scope=list(scope)), cost, exempt, key=key)


def limit(*rules: Rule | str | dict[str, Any], cost: int | None = None, exempt: bool = False,
          key: KeyFunction | None = None, scope: Iterable[str] = ROUTE_SCOPE) -> Callable[[Endpoint], Endpoint]:
    """Attach rules, a cost or an exemption to one route's endpoint (a view function or handler)::

        @app.get("/v1/search")
        @limit("10/minute;100/hour", cost=2)
        async def search(...): ...

        @app.post("/v1/login")
        @limit({"name": "login-user", "rate": "5/15m", "scope": ["custom"], "count_statuses": [401]},
               key=username)
        async def login(...): ...

    A rule is a rate string in the ``limits`` grammar (one rule per rate, named by it, e.g.
    ``10-per-1m``), a mapping as in a policy file (``rate`` or ``limit``/``period``; ``name``
    optional with ``rate``) or a :class:`Rule`. Rules that name no ``scope`` count per client
    and route (``scope``: ``["client", "endpoint"]``); give the same ``name`` and ``scope=["client"]``
    to share one counter between routes. ``key`` (sync or async) receives the request, body
    readable, before the handler does; what it returns keys the ``custom`` scope (None: the client).
    The adapter evaluates these rules in the same script call as the policy's.
    """
    limits = route_limits(*rules, cost=cost, exempt=exempt, key=key, scope=scope)

    def decorate(endpoint: Endpoint) -> Endpoint:
        setattr(endpoint, LIMITS_ATTR, merge_limits([getattr(endpoint, LIMITS_ATTR, None), limits]))
        return endpoint

    return decorate


def limits_of(*candidates: object) -> list[RouteLimits]:
    """The limits attached to each of ``candidates`` that carries some (e.g. a handler and its function)."""
    found: list[RouteLimits] = []
    for candidate in candidates:
        limits = getattr(candidate, LIMITS_ATTR, None)
        if isinstance(limits, RouteLimits) and all(limits is not seen for seen in found):
            found.append(limits)
    return found


def merge_limits(found: Iterable[RouteLimits | None]) -> RouteLimits | None:
    """One :class:`RouteLimits` for a route marked more than once (a decorator and dependencies):
    every rule once (by name and scope), the first cost and key, exempt if any says so."""
    present = [limits for limits in found if limits is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    rules: dict[tuple[str, tuple[str, ...]], Rule] = {}
    for limits in present:
        for rule in limits.rules:
            rules.setdefault((rule.name, tuple(rule.scope)), rule)
    return RouteLimits(
        tuple(rules.values()),
        next((limits.cost for limits in present if limits.cost is not None), None),
        any(limits.exempt for limits in present),
        key=next((limits.key for limits in present if limits.key is not None), None),
    )


class LimitsByObject:
    """The limits of a route object (a route, a URL rule, a view), collected once per object by
    ``collect``. Keyed by identity, as FastAPI's routes compare by value and do not hash; each entry
    keeps its object alive, so its id is never another object's."""

    def __init__(self, collect: Callable[[Any], RouteLimits | None]) -> None:
        self._collect = collect
        self._entries: dict[int, tuple[object, RouteLimits | None]] = {}

    def __call__(self, obj: object) -> RouteLimits | None:
        entry = self._entries.get(id(obj))
        if entry is None or entry[0] is not obj:
            entry = self._entries[id(obj)] = (obj, self._collect(obj))
        return entry[1]
