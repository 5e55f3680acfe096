"""Django and DRF on the same engine: throttles, middleware, headers, quotas, overrides, WSGI and ASGI."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from django.test import AsyncClient, Client

from ratewarden.enforcer import ApiKeyStore, Override, OverrideStore
from ratewarden.enforcer.django import reset_enforcer
from ratewarden.enforcer.django.throttling import parse_rate

SECRET = "test-secret-0123456789abcdef"
pytestmark = pytest.mark.urls("tests.django_urls")


@pytest.fixture(autouse=True)
def ratewarden_settings(settings, redis_sync: redis.Redis, redis_url: str) -> Iterator[None]:
    settings.RATEWARDEN = {**settings.RATEWARDEN, "REDIS_URL": redis_url, "API_KEY_SECRET": SECRET,
                           "REDIS_BUDGET_MS": 2000}
    yield
    reset_enforcer()


def test_policy_throttle_allows_then_denies_with_headers() -> None:
    client = Client(REMOTE_ADDR="198.51.100.1")
    responses = [client.get("/v1/items") for _ in range(61)]
    assert [r.status_code for r in responses[:60]] == [200] * 60
    ok, denied = responses[0], responses[60]
    assert ok["RateLimit-Policy"] == '"per-ip";q=60;w=60, "daily";q=2000;w=86400'
    assert ok["RateLimit"].startswith('"per-ip";r=59;t=') and ok["X-RateLimit-Remaining"] == "59"
    assert "Retry-After" not in ok
    assert denied.status_code == 429
    assert 1 <= int(denied["Retry-After"]) <= 61  # a sliding window counter may need period + period/limit
    assert denied["RateLimit"].startswith('"per-ip";r=0;t=') and denied["X-RateLimit-Remaining"] == "0"


def test_tiers_by_api_key(redis_sync: redis.Redis) -> None:
    keys = ApiKeyStore(redis_sync, SECRET.encode())
    paid, _ = keys.create(owner="acme", tier="paid")
    free, _ = keys.create(owner="tiny", tier="free")
    client = Client(REMOTE_ADDR="198.51.100.2")
    paid_response = client.get("/v1/items", HTTP_AUTHORIZATION=f"Bearer {paid}")
    assert '"burst";q=50;w=1' in paid_response["RateLimit-Policy"]
    # free: token bucket of 20 at 10/s; a quick burst of 25 meets it, paid does not
    free_statuses = [client.get("/v1/items", HTTP_AUTHORIZATION=f"Bearer {free}").status_code for _ in range(25)]
    paid_statuses = [client.get("/v1/items", HTTP_AUTHORIZATION=f"Bearer {paid}").status_code for _ in range(25)]
    assert free_statuses.count(429) >= 3 and paid_statuses == [200] * 25
    assert client.get("/v1/search", HTTP_AUTHORIZATION=f"Bearer {paid}")["X-RateLimit-Remaining"] is not None


def test_scoped_user_and_anon_throttles() -> None:
    client = Client(REMOTE_ADDR="198.51.100.3")
    uploads = [client.post("/uploads") for _ in range(4)]
    assert [r.status_code for r in uploads] == [200, 200, 200, 429]  # "uploads": "3/hour"
    assert uploads[3]["RateLimit-Policy"] == '"drf-uploads";q=3;w=3600'
    assert 3500 <= int(uploads[3]["Retry-After"]) <= 3600
    assert all(client.get("/unscoped").status_code == 200 for _ in range(5))  # no scope: not limited
    # anonymous caller: both user (per IP) and anon (per IP) rates apply; 100/hour anon is the tighter
    statuses = [client.get("/per-user").status_code for _ in range(101)]
    assert statuses == [200] * 100 + [429]
    assert Client(REMOTE_ADDR="198.51.100.4").get("/per-user").status_code == 200


def test_middleware_limits_a_plain_django_view() -> None:
    client = Client(REMOTE_ADDR="198.51.100.5")
    statuses = [client.get(f"/plain/page-{i}").status_code for i in range(60)]
    denied = client.get("/plain/another")
    assert statuses == [200] * 60
    assert denied.status_code == 429 and denied["Content-Type"] == "application/problem+json"
    body = denied.json()
    assert body["type"] == "urn:ratewarden:problem:rate-limited" and body["route"] == "GET /plain/{name}"
    assert client.get("/healthz").status_code == 200 and "RateLimit" not in client.get("/healthz")


def test_quota_and_block_overrides_at_run_time(redis_sync: redis.Redis) -> None:
    client = Client(REMOTE_ADDR="198.51.100.6")
    assert client.get("/v1/items").status_code == 200  # starts the enforcer and its change feed
    store = OverrideStore(redis_sync)
    store.set(Override(client_id="ip:198.51.100.6", quotas={"daily": 3}))
    deadline = time.monotonic() + 1.0
    while client.get("/plain/x")["RateLimit-Policy"] != '"per-ip";q=60;w=60, "daily";q=3;w=86400':
        assert time.monotonic() < deadline, "override not picked up within a second"
    statuses = [client.get("/plain/x") for _ in range(3)]
    quota = [r for r in statuses if r.status_code == 429]
    assert quota and quota[0].json()["type"] == "urn:ratewarden:problem:quota-exhausted"
    store.set(Override(client_id="ip:198.51.100.7", block=True, reason="abuse", expires_at=time.time() + 60))
    other = Client(REMOTE_ADDR="198.51.100.7")
    deadline = time.monotonic() + 1.0
    while (response := other.get("/v1/items")).status_code != 429:
        assert time.monotonic() < deadline, "block not picked up within a second"
    assert 50 <= int(response["Retry-After"]) <= 60


@pytest.mark.anyio
async def test_works_under_asgi_django() -> None:
    client = AsyncClient(REMOTE_ADDR="198.51.100.8")
    response = await client.get("/v1/items/7")
    assert response.status_code == 200 and response["RateLimit"].startswith('"per-ip";r=59')
    assert (await client.get("/v1/items/5000")).status_code == 404


def test_rates_are_read_whole_not_by_first_letter() -> None:
    assert parse_rate("100/day") == (100, 86400)
    assert parse_rate("5/15m") == (5, 900)
    assert parse_rate("10/sec") == (10, 1)
    assert parse_rate("3/min") == (3, 60)
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="month"):
        parse_rate("100/month")


def test_route_of_names_the_url_pattern_the_root_included() -> None:
    from types import SimpleNamespace

    from ratewarden.enforcer.django.conf import route_of
    from ratewarden.enforcer.routes import UNMATCHED_ROUTE

    def request(route: str | None, matched: bool = True) -> object:
        return SimpleNamespace(method="GET", resolver_match=SimpleNamespace(route=route) if matched else None)

    assert route_of(request("v1/items/<int:item_id>")) == "GET /v1/items/{item_id}"
    assert route_of(request("^v1/legacy/$")) == "GET /v1/legacy/"
    assert route_of(request("")) == "GET /"  # path("", view): the root, as the ASGI adapter names it
    assert route_of(request(None, matched=False)) == UNMATCHED_ROUTE
