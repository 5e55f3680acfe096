"""Pure ASGI middleware for any ASGI app: FastAPI, Starlette, Litestar and others.

The route template comes from the framework where it exposes one (Starlette's and FastAPI's
routers, Litestar's route handler and ``path_template``), else from the policy's route patterns;
finding it never raises. ``@limit`` and FastAPI's ``Depends(RateLimit(...))`` rules are found
when a route is first resolved and evaluated in the same script call as the policy's.
"""

from __future__ import annotations

import gc
import inspect
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .engine import Enforcer
from .gate import Gate, Resolver, publisher_for
from .plan import RouteLimits
from .publisher import EventPublisher
from .route_limits import LimitsByObject, limit, limits_of, merge_limits
from .routes import PolicyRoutes, Resolved, ResolvedPaths, brace_template, route_label

__all__ = ["RatewardenMiddleware", "limit", "on_shutdown", "RouteResolver", "freeze_startup_heap"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

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


def freeze_startup_heap() -> None:
    """Collect once, then freeze what is left (the app, its imports, caches built at start-up).

    While a request awaits Redis its frames, futures and closures are alive at each young-generation
    collection, so with tens of requests in flight they are promoted again and again, and every few
    seconds the collector walks the whole heap (~75,000 objects for the demo app: 30-50 ms, a pause
    of every request then in flight). Frozen objects are never walked again; full collections then
    cover only what was made since, and take well under a millisecond."""
    gc.collect()
    gc.freeze()


async def _read_key(key: Callable[[Any], Any], scope: Scope, receive: Receive) -> tuple[object, Receive]:
    """What the route's key function returns for this request, and a ``receive`` that replays the
    request body the function may have read, for the app to read again."""
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    value = key(_request(scope, _replaying(messages, receive)))
    if inspect.isawaitable(value):
        value = await value
    return value, _replaying(messages, receive)


def _request(scope: Scope, receive: Receive) -> Any:
    """The framework's request object for a key function: Litestar's inside Litestar, else Starlette's."""
    if "route_handler" in scope:
        from litestar import Request as LitestarRequest

        return LitestarRequest(scope, receive)  # type: ignore[arg-type]
    from starlette.requests import Request

    return Request(scope, receive)


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` that returns ``messages`` first, then reads on."""
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


async def _resolved(resolver: Resolver, scope: Scope) -> object:
    value = resolver(scope)
    return await value if inspect.isawaitable(value) else value


def on_shutdown(enforcer: Enforcer) -> Callable[[], Awaitable[None]]:
    """A shutdown hook for apps whose middleware sees no lifespan (Litestar builds its middleware per
    route, after routing): closes ``enforcer`` and flushes its event publisher::

        Litestar(handlers, middleware=[DefineMiddleware(RatewardenMiddleware, enforcer=enforcer)],
                 on_shutdown=[on_shutdown(enforcer)])
    """
    async def close() -> None:
        await _stop(enforcer, publisher_for(enforcer))

    return close


async def _stop(enforcer: Enforcer, publisher: EventPublisher | None) -> None:
    """Close ``enforcer``, then flush and stop ``publisher``."""
    await enforcer.aclose()
    if publisher is not None:
        await publisher.aclose()


class RatewardenMiddleware:
    """Decides every HTTP request before the app sees it; adds rate-limit headers;
    answers 429 (or 503 for a fail-closed outage) with a problem+json body.

    ``user_resolver(scope)`` may return the authenticated user id (an earlier middleware's, a JWT's
    subject, your own API key's id); ``tier_resolver(scope)`` may return the caller's tier (a JWT
    claim, a header, your own key's plan). Either may be a plain or a coroutine function; None (or
    an unknown tier, logged) keeps the default. With a ``publisher`` (or ``RATEWARDEN_KAFKA_BOOTSTRAP``
    set) every decided request becomes one event after its response; exempt routes produce none.

    Use it around the app (``RatewardenMiddleware(app, enforcer=...)``), as Starlette/FastAPI
    middleware (``app.add_middleware``) or as Litestar middleware
    (``DefineMiddleware(RatewardenMiddleware, enforcer=...)``). It starts and stops the enforcer and
    publisher with the app's lifespan where it sees it, else starts them on the first request.
    """

    def __init__(self, app: ASGIApp, enforcer: Enforcer, *, user_resolver: Resolver | None = None,
                 tier_resolver: Resolver | None = None, publisher: EventPublisher | None = None) -> None:
        self.app = app
        self.enforcer = enforcer
        self.gate = Gate(enforcer, publisher=publisher or publisher_for(enforcer), user_resolver=user_resolver,
                         tier_resolver=tier_resolver)
        self.publisher = self.gate.publisher
        self.routes = RouteResolver(app, PolicyRoutes(enforcer.file_policy))
        self._key_header = self.gate.key_header
        self._gate_caller = self.gate.caller  # bound once: called on every request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.app(scope, self._lifespan_receive(receive), self._lifespan_send(send))
        else:
            await self.app(scope, receive, send)

    def _lifespan_receive(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self._start()
            elif message["type"] == "lifespan.shutdown":
                await _stop(self.enforcer, self.publisher)
            return message

        return wrapped

    def _lifespan_send(self, send: Send) -> Send:
        async def started(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete" and self.enforcer.settings.gc_freeze:
                freeze_startup_heap()
            await send(message)

        return started

    async def _start(self) -> None:
        await self.enforcer.start()
        if self.publisher is not None:
            await self.publisher.start()

    def _caller(self, scope: Scope) -> tuple[str, str | None, str | None]:
        """(client IP, API key, user agent) from the socket and the headers."""
        api_key = xff = forwarded = user_agent = None
        key_header = self._key_header
        for name, value in scope["headers"]:
            if name == key_header:
                api_key = value.decode("latin-1")
            elif name == b"x-forwarded-for":
                xff = value.decode("latin-1")
            elif name == b"forwarded":
                forwarded = value.decode("latin-1")
            elif name == b"user-agent":
                user_agent = value.decode("latin-1")
        client = scope.get("client")
        ip, api_key = self._gate_caller(client[0] if client else None, xff, forwarded, api_key)
        return ip, api_key, user_agent

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        enforcer, gate = self.enforcer, self.gate
        if not enforcer.started:
            await self._start()
        started = time.perf_counter()
        route, route_limits = self.routes.resolve(scope)
        if route_limits is not None and route_limits.exempt:
            scope.setdefault("state", {})["ratewarden"] = None  # decided: not limited
            await self.app(scope, receive, send)
            return
        ip, api_key, user_agent = self._caller(scope)
        user = None if gate.user_resolver is None else gate.user_id(await _resolved(gate.user_resolver, scope))
        identity = await enforcer.identify(ip=ip, api_key=api_key, user=user)
        if gate.tier_resolver is not None:
            gate.assign_tier(identity, await _resolved(gate.tier_resolver, scope))
        if route_limits is not None and route_limits.key is not None:
            value, receive = await _read_key(route_limits.key, scope, receive)
            identity.set_custom(value)
        decision = await enforcer.decide(identity, route, route_limits)
        scope.setdefault("state", {})["ratewarden"] = decision
        if not decision.allowed:
            status, headers, body = gate.denial(decision)
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            gate.publish(decision, method=scope["method"], path=scope["path"], user_agent=user_agent, status=status,
                         started=started)
            return
        extra = gate.headers(decision)
        if not extra and not decision.leases and decision.settle is None and gate.publisher is None:
            await self.app(scope, receive, send)
            return
        status = 500  # if the app fails before answering

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            enforcer.finish(decision, status)
            gate.publish(decision, method=scope["method"], path=scope["path"], user_agent=user_agent, status=status,
                         started=started)

