"""URLs for the Django tests: the demo's, plus views using DRF-style throttles and a plain view."""

from django.http import JsonResponse
from django.urls import include, path
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle as DrfScopedRateThrottle
from rest_framework.views import APIView

from ratewarden.enforcer.django.throttling import AnonRateThrottle, ScopedRateThrottle, UserRateThrottle


class Uploads(APIView):
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "uploads"

    def post(self, request):
        return Response({"ok": True})


class Exact(APIView):
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "exact"

    def get(self, request):
        return Response({"ok": True})


class ExactWithDrfBuiltin(APIView):
    """The same scope and rate on DRF's own throttle (read-then-write on the cache), for the benchmark."""

    throttle_classes = [DrfScopedRateThrottle]
    throttle_scope = "exact"

    def get(self, request):
        return Response({"ok": True})


class Unscoped(APIView):
    throttle_classes = [ScopedRateThrottle]

    def get(self, request):
        return Response({"ok": True})


class PerUser(APIView):
    throttle_classes = [UserRateThrottle, AnonRateThrottle]

    def get(self, request):
        return Response({"ok": True})


def plain(request, name):
    return JsonResponse({"name": name})


urlpatterns = [
    path("", include("drfdemo.urls")),
    path("uploads", Uploads.as_view()),
    path("exact", Exact.as_view()),
    path("exact-drf-builtin", ExactWithDrfBuiltin.as_view()),
    path("unscoped", Unscoped.as_view()),
    path("per-user", PerUser.as_view()),
    path("plain/<slug:name>", plain),
]
