"""Pure ASGI middleware for FastAPI/Starlette, and a decorator for per-route limits."""

from __future__ import annotations

import gc
import inspect
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ratewarden.extras import MissingExtra

try:
    from starlette.requests import Request
    from starlette.routing import Match, Mount
except ModuleNotFoundError as exc:
    raise MissingExtra("fastapi", "ratewarden.enforcer.asgi", [str(exc.name)]) from None

from .decision import Decision
from .engine import Enforcer
from .events import make_event
from .headers import rate_limit_headers
from .identity import Identity, bearer_token
from .logs import get_logger
from .plan import UNMATCHED_ROUTE, KeyFunction, RouteLimits
from .policy import Rule
from .problem import problem_body, problem_status
from .publisher import EventPublisher

__all__ = ["RatewardenMiddleware", "limit", "RouteResolver"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = get_logger("ratewarden.enforcer")
_LIMITS_ATTR = "__ratewarden_limits__"
_MAX_CACHED_PATHS = 10_000
_PROBLEM_HEADERS = [(b"content-type", b"application/problem+json")]


def limit(*rules: Rule | dict[str, Any], cost: int | None = None, exempt: bool = False,
          key: KeyFunction | None = None) -> Callable:
    """Attach rules, a cost or an exemption to one route's endpoint function::

        async def username(request: Request) -> str | None:
            return (await request.json()).get("username")

        @app.post("/v1/login")
        @limit({"name": "login-ip", "limit": 5, "period": "15m", "scope": ["ip"], "count_statuses": [401]},
               {"name": "login-user", "limit": 5, "period": "15m", "scope": ["custom"], "count_statuses": [401]},
               key=username)
        async def login(...): ...

    The middleware evaluates them in the same script call as the policy's rules. ``key``
    (sync or async) receives the request, body readable, before the handler does; what it
    returns is the ``custom`` scope of the rules (None: the client).
    """
    parsed = tuple(r if isinstance(r, Rule) else Rule.model_validate(r) for r in rules)

    def decorate(endpoint: Callable) -> Callable:
        setattr(endpoint, _LIMITS_ATTR, RouteLimits(parsed, cost, exempt, key=key))
        return endpoint

    return decorate


class RouteResolver:
    """Finds the route template (``GET /v1/items/{item_id}``) a request will be routed to."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], tuple[str, RouteLimits | None]] = {}

    def resolve(self, scope: Scope) -> tuple[str, RouteLimits | None]:
        method, path = scope["method"], scope["path"]
        found = self._cache.get((method, path))
        if found is None:
            app = scope.get("app")
            routes = getattr(getattr(app, "router", app), "routes", ())
            found = _match(routes, scope, "") or (UNMATCHED_ROUTE, None)
            if len(self._cache) >= _MAX_CACHED_PATHS:
                self._cache.clear()
            self._cache[(method, path)] = found
        return found


def _match(routes: Any, scope: Scope, prefix: str) -> tuple[str, RouteLimits | None] | None:
    partial = None
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.NONE:
            continue
        if isinstance(route, Mount):
            inner = _match(route.routes, {**scope, **child}, prefix + route.path)
            if inner is not None:
                return inner
            continue
        limits = getattr(getattr(route, "endpoint", None), _LIMITS_ATTR, None)
        found = (f"{scope['method']} {prefix}{route.path}", limits)
        if match is Match.FULL:
            return found
        partial = partial or found
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


async def _apply_key_function(key: KeyFunction, identity: Identity, scope: Scope, receive: Receive) -> Receive:
    """Set ``identity.custom`` from the route's key function; returns a ``receive`` that
    replays the request body the function may have read, for the app to read again."""
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    value = key(Request(scope, _replaying(messages, receive)))
    if inspect.isawaitable(value):
        value = await value
    identity.set_custom(value)
    return _replaying(messages, receive)


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` that returns ``messages`` first, then reads on."""
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


class RatewardenMiddleware:
    """Decides every HTTP request before the app sees it; adds rate-limit headers;
    answers 429 (or 503 for a fail-closed outage) with a problem+json body.

    ``user_resolver(scope)`` may return the authenticated user id, if an earlier
    middleware established one. With a ``publisher`` (or ``RATEWARDEN_KAFKA_BOOTSTRAP``
    set) every decided request becomes one event after its response; exempt routes
    produce none. Starts and stops the enforcer and publisher with the app's lifespan.
    """

    def __init__(self, app: ASGIApp, enforcer: Enforcer, *,
                 user_resolver: Callable[[Scope], str | None] | None = None,
                 publisher: EventPublisher | None = None) -> None:
        self.app = app
        self.enforcer = enforcer
        self.user_resolver = user_resolver
        self.routes = RouteResolver()
        settings = enforcer.settings
        if publisher is None and settings.kafka_bootstrap:
            publisher = EventPublisher(settings)
        if publisher is None:
            log.info("events_off", reason="no Kafka bootstrap configured (RATEWARDEN_KAFKA_BOOTSTRAP)")
        self.publisher = publisher
        self._service, self._instance = settings.service_name, settings.instance_id
        self._draft, self._legacy = settings.draft_headers, settings.legacy_headers
        self._shadow = settings.shadow_headers
        header = settings.api_key_header.lower()
        self._bearer = header == "authorization"
        self._key_header = header.encode("latin-1")

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
                await self.enforcer.aclose()
                if self.publisher is not None:
                    await self.publisher.aclose()
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
        for name, value in scope["headers"]:
            if name == self._key_header:
                api_key = value.decode("latin-1")
            elif name == b"x-forwarded-for":
                xff = value.decode("latin-1")
            elif name == b"forwarded":
                forwarded = value.decode("latin-1")
            elif name == b"user-agent":
                user_agent = value.decode("latin-1")
        if api_key is not None and self._bearer:
            api_key = bearer_token(api_key)
        client = scope.get("client")
        ip = self.enforcer.ips.resolve(client[0] if client else None, xff, forwarded)
        return ip, api_key or None, user_agent

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        enforcer = self.enforcer
        if not enforcer.started:
            await self._start()
        started = time.perf_counter()
        route, route_limits = self.routes.resolve(scope)
        if route_limits is not None and route_limits.exempt:
            await self.app(scope, receive, send)
            return
        ip, api_key, user_agent = self._caller(scope)
        user = self.user_resolver(scope) if self.user_resolver else None
        identity = await enforcer.identify(ip=ip, api_key=api_key, user=user)
        if route_limits is not None and route_limits.key is not None:
            receive = await _apply_key_function(route_limits.key, identity, scope, receive)
        decision = await enforcer.decide(identity, route, route_limits)
        scope.setdefault("state", {})["ratewarden"] = decision
        if not decision.allowed:
            await self._deny(decision, send)
            self._publish(decision, scope, user_agent, problem_status(decision), started)
            return
        extra = rate_limit_headers(decision, draft=self._draft, legacy=self._legacy, shadow=self._shadow)
        if not extra and not decision.leases and decision.settle is None and self.publisher is None:
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
            self._publish(decision, scope, user_agent, status, started)

    def _publish(self, decision: Decision, scope: Scope, user_agent: str | None, status: int, started: float) -> None:
        if self.publisher is None or decision.identity is None or decision.exempt:
            return
        self.publisher.publish(make_event(
            decision, decision.identity, method=scope["method"], path=scope["path"], user_agent=user_agent,
            status=status, latency_ms=(time.perf_counter() - started) * 1000, service=self._service,
            instance=self._instance))

    async def _deny(self, decision: Decision, send: Send) -> None:
        body = problem_body(decision)
        headers = [*_PROBLEM_HEADERS, (b"content-length", str(len(body)).encode()),
                   *rate_limit_headers(decision, draft=self._draft, legacy=self._legacy, shadow=self._shadow)]
        await send({"type": "http.response.start", "status": problem_status(decision), "headers": headers})
        await send({"type": "http.response.body", "body": body})
