"""``/metrics`` for a Django project: the process's Prometheus registry, the enforcer's counters
and latency histogram among them::

    urlpatterns = [path("metrics", metrics_view), ...]

Exempt it in the policy (``endpoints: [{route: GET /metrics, exempt: true}]``). Under a
multi-process server (gunicorn workers) each process has its own registry: see the README."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder

__all__ = ["metrics_view"]


def metrics_view(request: HttpRequest) -> HttpResponse:
    """The exposition, text or OpenMetrics as the scraper's ``Accept`` asks."""
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return HttpResponse(encoder(REGISTRY), content_type=content_type)
