"""WSGI middleware for Flask and any WSGI app::

    from ratewarden.enforcer import SyncEnforcer, load_policy
    from ratewarden.enforcer.wsgi import RatewardenMiddleware

    app.wsgi_app = RatewardenMiddleware(app.wsgi_app, SyncEnforcer(load_policy("policy.yaml")))

On a Flask app (or its ``wsgi_app``) the route template comes from Flask's URL map
(``/items/<int:item_id>`` is ``GET /items/{item_id}``) and ``@limit`` on a view applies; on any
other WSGI app from the policy's route patterns. Decides with the sync enforcer (one pooled
connection per thread, the same script as on asyncio).
"""

from __future__ import annotations

import inspect
import io
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import Any

from .decision import Decision
from .engine import SyncEnforcer
from .gate import Gate, Resolver, publisher_for
from .plan import RouteLimits
from .publisher import EventPublisher
from .route_limits import LimitsByObject, limit, limits_of, merge_limits
from .routes import PolicyRoutes, Resolved, ResolvedPaths, brace_template, route_label

__all__ = ["RatewardenMiddleware", "limit", "DECISION_KEY"]

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

DECISION_KEY = "ratewarden.decision"  # the request's Decision, in the environ, for the app to read


def _text(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers]


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


class RouteResolver:
    """Finds the route (``GET /items/{item_id}``) of a WSGI request and the limits attached to it:
    from Flask's URL map when the app is a Flask app (or its bound ``wsgi_app``), else from the policy's
    route patterns. Cached per method and path; limits collected once per URL rule. Never raises."""

    def __init__(self, app: WSGIApp, policy_routes: PolicyRoutes) -> None:
        self.flask = _flask_app(app)
        self.policy_routes = policy_routes
        self._paths = ResolvedPaths()
        self._limits_of_rule = LimitsByObject(self._view_limits)

    def resolve(self, environ: Environ) -> Resolved:
        """The route label of ``environ``'s request and its route's limits (cached per method and path)."""
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "")
        found = self._paths.get(method, path)
        if found is None:
            found = self._paths.find(method, path, self._find, environ, method, path)
        return found

    def _find(self, environ: Environ, method: str, path: str) -> Resolved:
        if self.flask is not None:
            found = self._flask_route(environ, method)
            if found is not None:
                return found
        template = self.policy_routes.template(method, path)
        return route_label(method, template), None

    def _flask_route(self, environ: Environ, method: str) -> Resolved | None:
        flask = self.flask
        try:
            rule, _ = flask.url_map.bind_to_environ(environ).match(method=method, return_rule=True)
        except Exception:  # noqa: BLE001 - Werkzeug raises NotFound, MethodNotAllowed, RequestRedirect
            return None
        return route_label(method, brace_template(rule.rule)), self._limits_of_rule(rule)

    def _view_limits(self, rule: Any) -> RouteLimits | None:
        """``@limit`` on the view of a URL rule, or on its class-based view's class."""
        view = self.flask.view_functions.get(rule.endpoint)
        return merge_limits(limits_of(view, getattr(view, "view_class", None)))


def _flask_app(app: Any) -> Any:
    """The Flask app behind ``app`` (a Flask app or its bound ``wsgi_app``), else None."""
    for candidate in (app, getattr(app, "__self__", None)):
        if candidate is not None and hasattr(candidate, "url_map") and hasattr(candidate, "view_functions"):
            return candidate
    return None


class _Response:
    """The app's response iterable; when the server closes it (the response has ended), the
    decision is finished and the event published."""

    def __init__(self, body: Iterable[bytes], done: Callable[[], None]) -> None:
        self._body = body
        self._done = done

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._done()


class RatewardenMiddleware:
    """Decides every request before the WSGI app sees it; adds rate-limit headers; answers 429
    (or 503 for a fail-closed outage) with a problem+json body; one event per request after the
    response (with a ``publisher``, or ``RATEWARDEN_KAFKA_BOOTSTRAP`` set).

    ``user_resolver(environ)`` may return the authenticated user id, ``tier_resolver(environ)`` the
    caller's tier (plain functions: WSGI has no event loop to await on). The decision is in
    ``environ["ratewarden.decision"]``. The enforcer and publisher start on the first request.
    """

    def __init__(self, app: WSGIApp, enforcer: SyncEnforcer, *, user_resolver: Resolver | None = None,
                 tier_resolver: Resolver | None = None, publisher: EventPublisher | None = None) -> None:
        for name, resolver in (("user_resolver", user_resolver), ("tier_resolver", tier_resolver)):
            if resolver is not None and (inspect.iscoroutinefunction(resolver)
                                         or inspect.iscoroutinefunction(type(resolver).__call__)):
                raise TypeError(f"{name} is a coroutine function; under WSGI give a plain function")
        self.app = app
        self.enforcer = enforcer
        self.gate = Gate(enforcer, publisher=publisher or publisher_for(enforcer), user_resolver=user_resolver,
                         tier_resolver=tier_resolver)
        self.routes = RouteResolver(app, PolicyRoutes(enforcer.file_policy))
        self._started = False
        self._lock = threading.Lock()

    def _start(self) -> None:
        with self._lock:
            if not self._started:
                self.enforcer.start()
                if self.gate.publisher is not None:
                    self.gate.publisher.start_thread()
                self._started = True

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if not self._started:
            self._start()
        started = time.perf_counter()
        gate, enforcer = self.gate, self.enforcer
        route, route_limits = self.routes.resolve(environ)
        if route_limits is not None and route_limits.exempt:
            environ[DECISION_KEY] = None
            return self.app(environ, start_response)
        ip, api_key = gate.environ_caller(environ)
        user = None if gate.user_resolver is None else gate.user_id(gate.user_resolver(environ))
        identity = enforcer.identify(ip=ip, api_key=api_key, user=user)
        if gate.tier_resolver is not None:
            gate.assign_tier(identity, gate.tier_resolver(environ))
        if route_limits is not None and route_limits.key is not None:
            identity.set_custom(_read_key(route_limits.key, environ))
        decision = enforcer.decide(identity, route, route_limits)
        environ[DECISION_KEY] = decision
        if not decision.allowed:
            status, headers, body = gate.denial(decision)
            start_response(_status_line(status), _text(headers))
            self._publish(decision, environ, status, started)
            return [body]
        extra = _text(gate.headers(decision))
        status = 500  # if the app fails before answering

        def start_with_headers(status_line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            nonlocal status
            status = int(status_line.split(" ", 1)[0])
            return start_response(status_line, [*headers, *extra], exc_info)

        def done() -> None:
            enforcer.finish(decision, status)
            self._publish(decision, environ, status, started)

        try:
            response = self.app(environ, start_with_headers)
        except BaseException:
            done()
            raise
        return _Response(response, done)

    def _publish(self, decision: Decision, environ: Environ, status: int, started: float) -> None:
        self.gate.publish(decision, method=environ.get("REQUEST_METHOD", "GET"), path=environ.get("PATH_INFO", ""),
                          user_agent=environ.get("HTTP_USER_AGENT"), status=status, started=started)


def _read_key(key: Callable[[Any], Any], environ: Environ) -> object:
    """What the route's key function returns for ``environ``; the body it may read (``wsgi.input``)
    is kept and rewound for the app."""
    stream = environ.get("wsgi.input")
    if stream is not None and not isinstance(stream, io.BytesIO):
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            length = -1
        if length >= 0:
            environ["wsgi.input"] = stream = io.BytesIO(stream.read(length))
        elif environ.get("wsgi.input_terminated"):  # chunked: the server ends the stream at the body's end
            environ["wsgi.input"] = stream = io.BytesIO(stream.read())
    value = key(environ)
    if isinstance(stream, io.BytesIO):
        stream.seek(0)
    if inspect.iscoroutine(value):
        value.close()
        raise TypeError(f"key function {getattr(key, '__name__', key)!r} is a coroutine function; "
                        "under WSGI give a plain function")
    return value
