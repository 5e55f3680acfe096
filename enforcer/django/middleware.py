"""Django middleware: limits views (as the ASGI middleware does) and adds the headers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse

from ..decision import Decision
from ..events import make_event
from ..headers import rate_limit_headers
from ..problem import problem_body, problem_status
from ..settings import EnforcerSettings
from .conf import get_enforcer, get_publisher, identify_request, route_of

__all__ = ["RatewardenMiddleware"]

DECISION_ATTR = "ratewarden_decision"


def _throttled_by_drf(view_func: Any) -> bool:
    """True for a DRF view whose throttle classes include a ratewarden throttle (it decides there)."""
    view_class = getattr(view_func, "cls", None)
    if view_class is None:
        return False
    from .throttling import RatewardenThrottle

    return any(isinstance(t, type) and issubclass(t, RatewardenThrottle)
               for t in getattr(view_class, "throttle_classes", ()))


def denial_response(decision: Decision) -> HttpResponse:
    """The 429 (or 503) problem+json response for ``decision``."""
    enforcer = get_enforcer()
    response = HttpResponse(problem_body(decision), status=problem_status(decision),
                            content_type="application/problem+json")
    add_headers(response, decision, enforcer.settings)
    return response


def add_headers(response: HttpResponse, decision: Decision, settings: EnforcerSettings) -> None:
    for name, value in rate_limit_headers(decision, draft=settings.draft_headers, legacy=settings.legacy_headers,
                                          shadow=settings.shadow_headers):
        header = name.decode()
        if header not in response:
            response[header] = value.decode()


class RatewardenMiddleware:
    """Decides every view's requests before the view runs, except DRF views that use a
    ratewarden throttle class (the throttle decides, this adds the headers)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        decision: Decision | None = getattr(request, DECISION_ATTR, None)
        if decision is not None:
            enforcer = get_enforcer()
            settings = enforcer.settings
            add_headers(response, decision, settings)
            enforcer.finish(decision, response.status_code)
            publisher = get_publisher()
            if publisher is not None and decision.identity is not None and not decision.exempt:
                publisher.publish(make_event(
                    decision, decision.identity, method=request.method or "GET", path=request.path,
                    user_agent=request.META.get("HTTP_USER_AGENT"), status=response.status_code,
                    latency_ms=(time.perf_counter() - started) * 1000, service=settings.service_name,
                    instance=settings.instance_id))
        return response

    def process_view(self, request: HttpRequest, view_func: Any, view_args: Any,
                     view_kwargs: Any) -> HttpResponse | None:
        if _throttled_by_drf(view_func):
            return None
        enforcer = get_enforcer()
        decision = enforcer.decide(identify_request(enforcer, request), route_of(request))
        setattr(request, DECISION_ATTR, decision)
        return None if decision.allowed else denial_response(decision)
