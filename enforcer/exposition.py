"""``/metrics`` for the API process: an ASGI app (FastAPI, Starlette, any ASGI router) serving the
process's Prometheus registry, the enforcer's counters and latency histogram among them.

    app.router.routes.append(Route("/metrics", metrics_app))   # or app.mount("/metrics", metrics_app)

Exempt it from limiting in the policy (``endpoints: [{route: GET /metrics, exempt: true}]``) so
scrapes are neither counted nor published as events. The Django view is
``ratewarden.enforcer.django.metrics_view``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, make_asgi_app

__all__ = ["MetricsApp", "metrics_app"]


class MetricsApp:
    """An ASGI app answering every HTTP request with the registry's exposition (text or
    OpenMetrics, as the scraper's ``Accept`` asks; gzip if it accepts it).

    A class instance, not a function, so Starlette's ``Route`` serves it as an ASGI app."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self._app = make_asgi_app(registry)

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] == "http":
            await self._app(scope, receive, send)


metrics_app = MetricsApp()
