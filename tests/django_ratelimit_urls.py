"""Plain Django views limited by ``@ratelimit`` (the tests of ratewarden.enforcer.django.decorators)."""

from django.http import JsonResponse
from django.urls import path

from ratewarden.enforcer.django.decorators import ratelimit


@ratelimit(key="ip", rate="3/minute")
def login(request):
    return JsonResponse({"ok": True})


@ratelimit(key="ip", rate="3/minute")
def other(request):
    return JsonResponse({"ok": True})


@ratelimit(key="ip", rate="2/minute", block=False)
def search(request):
    return JsonResponse({"limited": request.limited})


@ratelimit(key="header:x-tenant", rate="2 per minute;100/hour")
def tenant(request):
    return JsonResponse({"ok": True})


@ratelimit(key="ip", rate="3/minute", group="shared")
def shared_a(request):
    return JsonResponse({"ok": True})


@ratelimit(key="ip", rate="3/minute", group="shared")
def shared_b(request):
    return JsonResponse({"ok": True})


@ratelimit(key="ip", rate="2/minute")
async def async_view(request):
    return JsonResponse({"ok": True})


urlpatterns = [
    path("login", login),
    path("other", other),
    path("search", search),
    path("tenant", tenant),
    path("shared-a", shared_a),
    path("shared-b", shared_b),
    path("async", async_view),
]
