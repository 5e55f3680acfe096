"""The demo endpoints, as DRF views (the plain Django ``healthz`` is limited by the middleware)."""

from django.http import JsonResponse
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

MAX_ITEM_ID = 1000


def healthz(request):
    return JsonResponse({"status": "ok"})


class Items(APIView):
    def get(self, request):
        limit = min(max(int(request.query_params.get("limit", 20)), 1), 100)
        return Response({"items": [{"id": i, "name": f"item {i}"} for i in range(1, limit + 1)]})


class Item(APIView):
    def get(self, request, item_id: int):
        if not 1 <= item_id <= MAX_ITEM_ID:
            raise NotFound("no such item")
        return Response({"id": item_id, "name": f"item {item_id}"})


class Search(APIView):
    def get(self, request):
        return Response({"query": request.query_params.get("q", ""), "results": [{"id": i} for i in range(1, 6)]})


class Login(APIView):
    def post(self, request):
        if request.data.get("password") != "correct-horse":
            return Response({"detail": "wrong username or password"}, status=401)
        return Response({"token": f"session-for-{request.data.get('username', '')}"})
