"""URLs of the behaviour suite's Django app (tests/framework_apps.py): DRF views decided by the
policy throttle (``DEFAULT_THROTTLE_CLASSES`` of the demo settings), a plain view with ``@limit``."""

from django.http import JsonResponse
from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from ratewarden.enforcer.route_limits import limit

from .framework_apps import ROUTE_RATE


def healthz(request):
    return JsonResponse({"status": "ok"})


class Item(APIView):
    def get(self, request, item_id: int):
        return Response({"id": item_id})


@limit(ROUTE_RATE)
def limited(request):
    return JsonResponse({"ok": True})


urlpatterns = [
    path("healthz", healthz),
    path("items/<int:item_id>", Item.as_view()),
    path("limited", limited),
]
