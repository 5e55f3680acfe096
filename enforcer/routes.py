"""One route vocabulary for every adapter: ``METHOD /template`` labels, one label for requests
no route matches, framework templates converted to it, and routes found from the policy's own
patterns when the framework tells nothing."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .logs import get_logger
from .plan import UNMATCHED_ROUTE, RouteLimits
from .policy import Policy

__all__ = ["UNMATCHED_ROUTE", "UNMATCHED", "MAX_CACHED_PATHS", "Resolved", "ResolvedPaths", "route_label",
           "brace_template", "PolicyRoutes"]

Resolved = tuple[str, RouteLimits | None]
"""A request's route label and the limits attached to its route (None: none)."""
UNMATCHED: Resolved = (UNMATCHED_ROUTE, None)
MAX_CACHED_PATHS = 10_000  # distinct (method, path) pairs remembered before the cache starts afresh

_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")  # <int:item_id> (Django, Werkzeug/Flask) -> {item_id}
_TYPED_PARAM = re.compile(r"\{([^{}:]+):[^{}]*\}")  # {item_id:int} (Starlette, Litestar) -> {item_id}
_PARAM = re.compile(r"\\\{[^{}]*\\\}")
_MAX_LOGGED_FAILURES = 10
log = get_logger("ratewarden.enforcer")


def route_label(method: str, template: str | None) -> str:
    """``GET /v1/items/{item_id}`` for a matched template; the one unmatched label otherwise."""
    return f"{method} {template}" if template else UNMATCHED_ROUTE


def brace_template(template: str) -> str:
    """A framework's path template in the policy's form: ``<int:id>`` and ``{id:int}`` become ``{id}``,
    regular-expression anchors go, and the path starts with ``/``."""
    path = _TYPED_PARAM.sub(r"{\1}", _CONVERTER.sub(r"{\1}", template)).lstrip("^").rstrip("$")
    return path if path.startswith("/") else "/" + path


class PolicyRoutes:
    """Finds the route of a request from the policy's route patterns (endpoints, rules' and
    capacities' ``endpoints``), for apps whose framework exposes no template: ``GET /v1/items/7``
    matches the pattern ``GET /v1/items/{item_id}``. Never raises; cached per method and path."""

    def __init__(self, policy: Policy) -> None:
        patterns: list[str] = [endpoint.route for endpoint in policy.endpoints]
        for tier in policy.tiers.values():
            patterns += [p for rule in tier.rules for p in rule.endpoints or ()]
        patterns += [p for endpoint in policy.endpoints for rule in endpoint.rules for p in rule.endpoints or ()]
        patterns += [p for capacity in policy.capacity for p in capacity.endpoints]
        self._patterns: list[tuple[str, re.Pattern[str], str]] = []
        seen = set()
        for pattern in patterns:
            method, path = pattern.split(" ", 1)
            if (method, path) in seen:
                continue
            seen.add((method, path))
            if path.endswith("*"):
                regex = re.compile(_PARAM.sub("[^/]+", re.escape(path[:-1])) + ".*")
            else:
                regex = re.compile(_PARAM.sub("[^/]+", re.escape(path)))
            self._patterns.append((method, regex, path))
        self._patterns.sort(key=lambda entry: entry[2].endswith("*"))  # exact templates before prefixes
        self._cache: dict[tuple[str, str], str | None] = {}

    def template(self, method: str, path: str) -> str | None:
        """The pattern path ``path`` matches for ``method`` (exact patterns first), else None."""
        key = (method, path)
        if key in self._cache:
            return self._cache[key]
        found = None
        for pattern_method, regex, template in self._patterns:
            if pattern_method in ("*", method) and regex.fullmatch(path):
                found = template
                break
        if len(self._cache) >= MAX_CACHED_PATHS:
            self._cache.clear()
        self._cache[key] = found
        return found


class ResolvedPaths:
    """An adapter's routes found per (method, path), bounded by ``MAX_CACHED_PATHS``; a lookup that
    raises is the unmatched route (the first ten failures logged), so finding a route never fails
    a request."""

    def __init__(self) -> None:
        self._paths: dict[tuple[str, str], Resolved] = {}
        self._failures = 0

    def get(self, method: str, path: str) -> Resolved | None:
        """What was found for ``method`` and ``path`` before, else None."""
        return self._paths.get((method, path))

    def find(self, method: str, path: str, lookup: Callable[..., Resolved], *args: Any) -> Resolved:
        """``lookup(*args)`` (the unmatched route if it raises), remembered for ``method`` and ``path``."""
        try:
            found = lookup(*args)
        except Exception as exc:  # noqa: BLE001 - a framework's lookup failing must not fail the request
            found = self.failed(exc)
        if len(self._paths) >= MAX_CACHED_PATHS:
            self._paths.clear()
        self._paths[method, path] = found
        return found

    def failed(self, exc: Exception) -> Resolved:
        """Count (and log the first few of) lookups that raised; the unmatched route."""
        self._failures += 1
        if self._failures <= _MAX_LOGGED_FAILURES:
            log.warning("route_lookup_failed", error=type(exc).__name__, detail=str(exc)[:200])
        return UNMATCHED
