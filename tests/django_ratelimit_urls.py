"""Plain Django views limited by ``@ratelimit`` (the tests of ratewarden.enforcer.django.decorators)."""

from django.http import JsonResponse
from django.urls import path
from django.utils.decorators import method_decorator
from django.views import View

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


@ratelimit(key="ip", rate="2/minute")
class ClassBased(View):
    def get(self, request):
        return JsonResponse({"ok": True})


class DispatchDecorated(View):
    """The django-ratelimit idiom for class-based views: the middleware cannot see this mark."""

    @method_decorator(ratelimit(key="ip", rate="2/minute"))
    def dispatch(self, request, *args, **kwargs):
        return super().dispatch(request, *args, **kwargs)

    def get(self, request):
        return JsonResponse({"ok": True})


urlpatterns = [
    path("class-based", ClassBased.as_view()),
    path("dispatch-decorated", DispatchDecorated.as_view()),
    path("login", login),
    path("other", other),
    path("search", search),
    path("tenant", tenant),
    path("shared-a", shared_a),
    path("shared-b", shared_b),
    path("async", async_view),
]
