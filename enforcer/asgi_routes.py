"""Finding an ASGI request's route and the limits attached to it, for ``RatewardenMiddleware``.

The route template comes from the framework where it exposes one (Starlette's and FastAPI's
routers, Litestar's route handler and ``path_template``), else from the policy's route patterns;
finding it never raises. ``@limit`` and FastAPI's ``Depends(RateLimit(...))`` rules are collected
when a route is first resolved.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

from .plan import RouteLimits
from .route_limits import LimitsByObject, limits_of, merge_limits
from .routes import PolicyRoutes, Resolved, ResolvedPaths, brace_template, route_label

__all__ = ["RouteResolver"]

Scope = MutableMapping[str, Any]
ASGIApp = Callable[..., Any]

_MAX_WRAPPERS = 32  # how deep to look through middleware for the app's router


class RouteResolver:
    """Finds the route (``GET /v1/items/{item_id}``) of a request, and the limits attached to it.

    In order: the route Litestar already matched (``scope["route_handler"]``, inside a Litestar app);
    the app's own router, found through the middleware it is wrapped in (Starlette and FastAPI routes
    and mounts, a Litestar app's router); the policy's route patterns. A route's limits are collected
    once per route object (``@limit`` on the endpoint, ``RateLimit`` dependencies anywhere in a FastAPI
    route's dependency tree, so a router's ``dependencies=`` count). Never raises: a request no route
    matches (or whose lookup fails) is the one unmatched route.
    """

    def __init__(self, app: ASGIApp, policy_routes: PolicyRoutes) -> None:
        self.app = app
        self.policy_routes = policy_routes
        self._paths = ResolvedPaths()
        self._limits_of_route = LimitsByObject(_collect_limits)
        # (id(Litestar handler), method, template) -> (handler, resolved)
        self._handlers: dict[tuple[int, str, object], tuple[object, Resolved]] = {}
        self._router: object = None
        self._looked_for_router = False

    def resolve(self, scope: Scope) -> Resolved:
        """The route label of ``scope``'s request and its route's limits (cached per method and path)."""
        method, path = scope["method"], scope["path"]
        found = self._paths.get(method, path)
        if found is None:
            handler = scope.get("route_handler")
            if handler is not None:  # inside a Litestar app: it has routed the request already
                found = self._paths.find(method, path, self._of_handler, handler, scope)
            else:
                found = self._paths.find(method, path, self._find, scope)
        return found

    def _of_handler(self, handler: object, scope: Scope) -> Resolved:
        handler_key = (id(handler), scope["method"], scope.get("path_template"))
        entry = self._handlers.get(handler_key)
        if entry is None or entry[0] is not handler:  # the entry keeps its handler alive
            try:
                resolved = self._litestar_handler(scope, handler)
            except Exception as exc:  # noqa: BLE001 - a framework's lookup failing must not fail the request
                resolved = self._paths.failed(exc)
            entry = self._handlers[handler_key] = (handler, resolved)
        return entry[1]

    def _find(self, scope: Scope) -> Resolved:
        router = self._router_of(scope)
        found: Resolved | None = None
        if router is not None and hasattr(router, "handle_routing"):  # a Litestar app wrapped from outside
            found = self._litestar_lookup(router, scope)
        elif router is not None:
            matched = _starlette_match(getattr(router, "routes", ()), scope, "", self._limits_of_route)
            found = matched[1] if matched is not None else None
        if found is not None:
            return found
        template = self.policy_routes.template(scope["method"], scope["path"])
        return route_label(scope["method"], template), None

    def _router_of(self, scope: Scope) -> object:
        """The app's router: from ``scope["app"]`` (set by Starlette), else found once by following
        ``.app`` from the wrapped app through its middleware."""
        app = scope.get("app")
        if app is not None:
            return getattr(app, "router", None)
        if not self._looked_for_router:
            self._looked_for_router = True
            candidate: Any = self.app
            for _ in range(_MAX_WRAPPERS):
                if candidate is None:
                    break
                litestar_router = getattr(candidate, "asgi_router", None)
                if litestar_router is not None:
                    self._router = litestar_router
                    break
                starlette_router = getattr(candidate, "router", None)
                if starlette_router is not None and hasattr(starlette_router, "routes"):
                    self._router = starlette_router
                    break
                if hasattr(candidate, "routes") and hasattr(candidate, "url_path_for"):
                    self._router = candidate
                    break
                candidate = getattr(candidate, "app", None)
        return self._router

    def _litestar_handler(self, scope: Scope, handler: Any) -> Resolved:
        template = scope.get("path_template")
        limits = merge_limits(limits_of(handler, getattr(handler, "fn", None)))
        if not template and not getattr(handler, "is_mount", False):
            # a route without parameters, whose template older Litestar 2 releases (2.12) leave empty
            template = scope["path"]
        if not template:
            template = self.policy_routes.template(scope["method"], scope["path"])
        return route_label(scope["method"], brace_template(template) if template else None), limits

    def _litestar_lookup(self, router: Any, scope: Scope) -> Resolved | None:
        try:
            _, handler, _, _, template = router.handle_routing(path=scope["path"], method=scope["method"])
        except Exception:  # noqa: BLE001 - Litestar raises NotFound and MethodNotAllowed for unrouted requests
            return None
        return self._litestar_handler({**scope, "path_template": template}, handler)


def _collect_limits(route: Any) -> RouteLimits | None:
    """``@limit`` on the route's endpoint and every ``RateLimit`` in its FastAPI dependency tree
    (the router's ``dependencies=`` included), in the order FastAPI would call them."""
    found = limits_of(getattr(route, "endpoint", None))
    stack = [getattr(route, "dependant", None)]
    while stack:
        dependant = stack.pop()
        if dependant is None:
            continue
        found += [limits for limits in limits_of(getattr(dependant, "call", None)) if limits not in found]
        stack += reversed(getattr(dependant, "dependencies", ()))
    return merge_limits(found)


def _starlette_match(routes: Any, scope: Scope, prefix: str,
                     limits_of_route: Callable[[Any], RouteLimits | None]) -> tuple[bool, Resolved] | None:
    """(full, resolved) for the first route matching ``scope`` fully, else for the first matching all
    but the method (which the app answers 405), else None."""
    from starlette.routing import Match, Mount

    partial = None
    for route in routes:
        candidates = getattr(route, "effective_candidates", None)
        if candidates is not None:  # a router FastAPI included (0.16x): its routes, as included
            inner = _starlette_match(candidates(), scope, prefix, limits_of_route)
        else:
            included = getattr(route, "starlette_route", None)  # one of them: a mount is matched as one
            if isinstance(included, Mount):
                route = included
            match, child = route.matches(scope)
            if match is Match.NONE:
                continue
            if isinstance(route, Mount):
                inner = _starlette_match(route.routes, {**scope, **child}, prefix + route.path, limits_of_route)
            else:
                path = getattr(route, "path", None) or getattr(included, "path", None)
                if path is None:
                    continue
                inner = (match is Match.FULL,
                         (route_label(scope["method"], brace_template(prefix + path)), limits_of_route(route)))
        if inner is None:
            continue
        if inner[0]:
            return inner
        partial = partial or inner
    return partial
