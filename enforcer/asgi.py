"""Pure ASGI middleware for any ASGI app: FastAPI, Starlette, Litestar and others.

The route and its ``@limit`` and FastAPI ``Depends(RateLimit(...))`` rules are found by
:class:`~.asgi_routes.RouteResolver` (from the framework's router where it has one, else the
policy's route patterns) and evaluated in the same script call as the policy's.
"""

from __future__ import annotations

import gc
import inspect
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .asgi_routes import RouteResolver
from .engine import Enforcer
from .gate import Gate, Resolver, publisher_for
from .publisher import EventPublisher
from .route_limits import limit
from .routes import PolicyRoutes

__all__ = ["RatewardenMiddleware", "limit", "on_shutdown", "RouteResolver", "freeze_startup_heap"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


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

