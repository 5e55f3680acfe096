"""``@ratelimit`` for plain Django views, in the style of django-ratelimit, on ratewarden's engine::

    from ratewarden.enforcer.django.decorators import ratelimit

    @ratelimit(key="ip", rate="5/minute")              # the 6th request in a minute from one IP: 429
    def login(request): ...

    @ratelimit(key="user_or_ip", rate="100/hour;1000/day", block=False)
    def search(request):
        if request.limited: ...                          # over a rate: counted, not refused

``rate`` is one or more rates in the ``limits`` grammar (``"10/minute"``, ``"10 per minute"``,
``"5/15m"``, several joined by ``;``). ``key`` is what is counted: ``"ip"`` (the client address,
through ``RATEWARDEN_TRUSTED_PROXIES``), ``"user"`` (the authenticated user; anonymous callers by
address), ``"user_or_ip"`` (the caller: API key, else user, else address), ``"header:<name>"``,
``"get:<name>"``, ``"post:<name>"``, or a function of the request returning a string (None: the
caller). The count is per view unless ``group`` names a count several views share. With
``block=False`` the rules never refuse: the view runs and ``request.limited`` says whether a rate
was exceeded. ``cost`` is the units one request takes.

It decorates a view function, an ``as_view()`` or a class-based view's class (whose ``dispatch``
it guards). The rules are decided in the same script call as the policy's: by
``RatewardenMiddleware`` when it is installed (it finds them on the view, as it finds ``@limit``),
else here, before the view runs, which then also sends the rate-limit headers and the request's
event. Rules the middleware could not see (``method_decorator`` on ``dispatch``) are decided here
after its decision, on their own. Without a policy file only these rules apply.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse

from ..decision import Decision
from ..plan import KeyFunction, RouteLimits
from ..rates import parse_rates
from ..route_limits import LIMITS_ATTR, merge_limits, route_limits
from .conf import get_enforcer, identify_request, route_of
from .middleware import DECISION_ATTR, after_response, denial_response, limits_of_view

__all__ = ["LIMITED_ATTR", "ratelimit"]

LIMITED_ATTR = "limited"  # as django-ratelimit names it
_STARTED_ATTR = "ratewarden_started"

View = TypeVar("View", bound=Callable[..., Any])
_DIMENSIONS = {"ip": "ip", "user": "user", "user_or_ip": "client"}
_GROUP = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")


def _key_function(key: str | Callable[[HttpRequest], str | None]) -> tuple[str, KeyFunction | None]:
    """The rules' dimension for ``key`` and, for the ``custom`` one, the function reading it."""
    if callable(key):
        return "custom", key
    if key in _DIMENSIONS:
        return _DIMENSIONS[key], None
    source, _, name = key.partition(":")
    if name and source == "header":
        meta_name = "HTTP_" + name.upper().replace("-", "_")
        return "custom", lambda request: request.META.get(meta_name)
    if name and source == "get":
        return "custom", lambda request: request.GET.get(name)
    if name and source == "post":
        return "custom", lambda request: request.POST.get(name)
    raise ValueError(f"@ratelimit key {key!r}: use 'ip', 'user', 'user_or_ip', 'header:<name>', "
                     "'get:<name>', 'post:<name>' or a function of the request")


def ratelimit(*, rate: str, key: str | Callable[[HttpRequest], str | None] = "ip", block: bool = True,
              group: str | None = None, cost: int | None = None) -> Callable[[View], View]:
    """Limit a Django view to ``rate`` per ``key`` (see the module's docs): a view function, an
    ``as_view()`` or a class-based view class (its ``dispatch`` is guarded)."""
    if group is not None and not _GROUP.match(group):
        raise ValueError(f"@ratelimit group {group!r} must match {_GROUP.pattern}")
    dimension, key_function = _key_function(key)
    scope = [dimension] if group else [dimension, "endpoint"]  # a group's count is shared by its views
    own = route_limits(*[
        {"limit": r.limit, "period": r.period_s, "name": f"{group}.{r.name}" if group else r.name, "scope": scope,
         "shadow": not block} for r in parse_rates(rate)], cost=cost, key=key_function)

    def decorate(view: View) -> View:
        if key_function is not None and getattr(getattr(view, LIMITS_ATTR, None), "key", None) is not None:
            raise ValueError("one key function per view: stack @ratelimit with 'ip', 'user' or 'user_or_ip' keys")
        if isinstance(view, type):
            guarded: Any = view
            view.dispatch = _guarded_dispatch(view.dispatch, _Guard(own, view),  # type: ignore[attr-defined]
                                              getattr(view, "view_is_async", False))
        elif iscoroutinefunction(view):
            @functools.wraps(view)
            async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
                return await guard.arun(request, lambda: view(request, *args, **kwargs))

            guarded = async_wrapper
            guard = _Guard(own, guarded)
        else:
            @functools.wraps(view)
            def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
                return guard.run(request, lambda: view(request, *args, **kwargs))

            guarded = wrapper
            guard = _Guard(own, guarded)
        # the mark the middleware reads (with the marks of decorators below this one)
        setattr(guarded, LIMITS_ATTR, merge_limits([getattr(guarded, LIMITS_ATTR, None), own]))
        return guarded

    return decorate


def _guarded_dispatch(dispatch: Callable[..., Any], guard: _Guard, is_async: bool) -> Callable[..., Any]:
    if is_async:
        @functools.wraps(dispatch)
        async def async_dispatch(self: Any, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            return await guard.arun(request, lambda: dispatch(self, request, *args, **kwargs))

        return async_dispatch

    @functools.wraps(dispatch)
    def sync_dispatch(self: Any, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return guard.run(request, lambda: dispatch(self, request, *args, **kwargs))

    return sync_dispatch


class _Guard:
    """What one ``@ratelimit`` does around its view: its own rules (``own``); ``marked`` is the
    function or class carrying every ``@ratelimit`` of the view (the rules the middleware sees)."""

    def __init__(self, own: RouteLimits, marked: Any) -> None:
        self.own = own
        self.marked = marked
        self.rules = {(rule.name, tuple(rule.scope)) for rule in own.rules}
        self.names = {rule.name for rule in own.rules}

    def run(self, request: HttpRequest, call: Callable[[], HttpResponse]) -> HttpResponse:
        decision, decided_here, response = self._before(request)
        if response is None:
            response = call()
        if decided_here:
            _finish(request, response, decision)
        return response

    async def arun(self, request: HttpRequest, call: Callable[[], Awaitable[HttpResponse]]) -> HttpResponse:
        decision, decided_here, response = await sync_to_async(self._before, thread_sensitive=False)(request)
        if response is None:
            response = await call()
        if decided_here:
            await sync_to_async(_finish, thread_sensitive=False)(request, response, decision)
        return response

    def _before(self, request: HttpRequest) -> tuple[Decision, bool, HttpResponse | None]:
        """The decision covering these rules, whether it was made here, and the denial to send instead
        of the view's response (None: run the view)."""
        decided: Decision | None = getattr(request, DECISION_ATTR, None)
        if decided is not None and self._applied(request):
            decision, decided_here = decided, False
        else:
            decision, decided_here = self._decide(request, first=decided is None), True
        if not decision.allowed:
            return decision, decided_here, denial_response(decision)
        setattr(request, LIMITED_ATTR, getattr(request, LIMITED_ATTR, False) or decision.shadow_denied in self.names)
        return decision, decided_here, None

    def _applied(self, request: HttpRequest) -> bool:
        """Whether the request's decision covered these rules: the middleware applies the marks it
        finds on the resolved view (not on a method wrapped by ``method_decorator``)."""
        match = getattr(request, "resolver_match", None)
        found = limits_of_view(match.func) if match is not None else None
        return found is not None and self.rules <= {(rule.name, tuple(rule.scope)) for rule in found.rules}

    def _decide(self, request: HttpRequest, *, first: bool) -> Decision:
        """The first decision of the request: the policy's rules and every ``@ratelimit`` of the view
        in one script call. After another one (made without these rules): these rules alone."""
        setattr(request, _STARTED_ATTR, time.perf_counter())  # for the event's latency
        enforcer = get_enforcer()
        limits = getattr(self.marked, LIMITS_ATTR) if first else dataclasses.replace(self.own, standalone=True)
        identity = identify_request(enforcer, request)
        if limits.key is not None:
            identity.set_custom(limits.key(request))
        decision = enforcer.decide(identity, route_of(request), limits)
        if first:
            setattr(request, DECISION_ATTR, decision)
        return decision


def _finish(request: HttpRequest, response: HttpResponse, decision: Decision) -> None:
    """What the middleware does after a response it decided: headers (where none are set yet),
    settlement and, for the request's own decision, its event."""
    own = getattr(request, DECISION_ATTR, None) is decision  # one event per request (the middleware sends its own)
    after_response(request, response, decision, getattr(request, _STARTED_ATTR, time.perf_counter()) if own else None)
