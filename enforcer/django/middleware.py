"""Django middleware: limits views (as the ASGI and WSGI middleware do) and adds the headers.

The request lifecycle is the gate's (``ratewarden.enforcer.gate``); this module keeps Django's
glue: the view's route template, ``request.META`` as the caller's facts, ``HttpResponse``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse

from ..decision import Decision
from ..plan import RouteLimits
from ..route_limits import LimitsByObject, limits_of, merge_limits
from ..routes import UNMATCHED_ROUTE
from .conf import get_enforcer, get_gate, identify_request, route_of

__all__ = ["RatewardenMiddleware", "denial_response", "add_headers", "after_response", "limits_of_view",
           "DECISION_ATTR"]

DECISION_ATTR = "ratewarden_decision"


def _throttled_by_drf(view_func: Any) -> bool:
    """True for a DRF view whose throttle classes include a ratewarden throttle (it decides there)."""
    view_class = getattr(view_func, "cls", None)
    if view_class is None:
        return False
    from .throttling import RatewardenThrottle

    return any(isinstance(t, type) and issubclass(t, RatewardenThrottle)
               for t in getattr(view_class, "throttle_classes", ()))


def _view_limits(view_func: Any) -> RouteLimits | None:
    """``@limit`` on a view function or on the class of a class-based view."""
    view_class = getattr(view_func, "view_class", None) or getattr(view_func, "cls", None)
    return merge_limits(limits_of(view_func, view_class))


limits_of_view = LimitsByObject(_view_limits)  # once per view


def denial_response(decision: Decision) -> HttpResponse:
    """The 429 (or 503) problem+json response for ``decision``."""
    status, headers, body = get_gate().denial(decision)
    response = HttpResponse(body, status=status, content_type="application/problem+json")
    for name, value in headers[2:]:  # after the content type and length, which Django sets itself
        response[name.decode("latin-1")] = value.decode("latin-1")
    return response


def add_headers(response: HttpResponse, decision: Decision) -> None:
    """The decision's rate-limit headers on ``response``, unless it has them already."""
    for name, value in get_gate().headers(decision):
        header = name.decode("latin-1")
        if header not in response:
            response[header] = value.decode("latin-1")


def after_response(request: HttpRequest, response: HttpResponse, decision: Decision, started: float | None) -> None:
    """What follows a response ``decision`` covered: its rate-limit headers (where none are set yet),
    its settlement and, with ``started`` (``time.perf_counter()`` at the request's start), the event."""
    add_headers(response, decision)
    get_enforcer().finish(decision, response.status_code)
    if started is not None:
        get_gate().publish(decision, method=request.method or "GET", path=request.path,
                           user_agent=request.META.get("HTTP_USER_AGENT"), status=response.status_code,
                           started=started)


class RatewardenMiddleware:
    """Decides every view's requests before the view runs (with ``@limit`` rules on the view), except
    DRF views that use a ratewarden throttle class (the throttle decides, this adds the headers and
    gives its denial the problem+json body).
    Requests no URL pattern matches are decided as the one unmatched route after Django's 404,
    which a denial replaces: scanners are counted as in the ASGI and WSGI middleware."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        decision: Decision | None = getattr(request, DECISION_ATTR, None)
        if decision is None and getattr(request, "resolver_match", None) is None:
            decision = self._decide(request, UNMATCHED_ROUTE, None)
            if not decision.allowed:
                response = denial_response(decision)
        elif decision is not None and not decision.allowed and response.status_code in (429, decision.status) \
                and response.get("Content-Type") != "application/problem+json":
            response = denial_response(decision)  # DRF's Throttled answer: the same problem+json body everywhere
        if decision is not None:
            after_response(request, response, decision, started)
        return response

    def process_view(self, request: HttpRequest, view_func: Any, view_args: Any,
                     view_kwargs: Any) -> HttpResponse | None:
        if _throttled_by_drf(view_func):
            return None
        limits = limits_of_view(view_func)
        if limits is not None and limits.exempt:
            return None
        decision = self._decide(request, route_of(request), limits)
        return None if decision.allowed else denial_response(decision)

    @staticmethod
    def _decide(request: HttpRequest, route: str, limits: RouteLimits | None) -> Decision:
        enforcer = get_enforcer()
        identity = identify_request(enforcer, request)
        if limits is not None and limits.key is not None:
            identity.set_custom(limits.key(request))
        decision = enforcer.decide(identity, route, limits)
        setattr(request, DECISION_ATTR, decision)
        return decision
