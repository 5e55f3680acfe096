"""``@ratelimit`` on plain Django views: with and without the middleware, one script call either way."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from django.test import AsyncClient, Client

from ratewarden.enforcer.django import reset_enforcer
from ratewarden.enforcer.django.decorators import ratelimit

from .helpers import command_counts

pytestmark = pytest.mark.urls("tests.django_ratelimit_urls")


@pytest.fixture(params=["decorator-alone", "with-middleware"])
def mode(request: pytest.FixtureRequest, settings, redis_sync: redis.Redis, redis_url: str) -> Iterator[str]:
    """A project with only the decorator (no middleware, no policy file), or with the middleware and the
    demo's policy (the middleware applies the view's rules with the policy's)."""
    settings.RATEWARDEN = {"REDIS_URL": redis_url, "REDIS_BUDGET_MS": 2000}
    if request.param == "decorator-alone":
        settings.MIDDLEWARE = []
    else:
        settings.RATEWARDEN = {**settings.RATEWARDEN, "POLICY_FILE": "examples/policy.yaml"}
    yield request.param
    reset_enforcer()


def statuses(client: Client, path: str, count: int, **extra: str) -> list[int]:
    return [client.get(path, **extra).status_code for _ in range(count)]


def test_blocks_past_the_rate_with_problem_json(mode: str) -> None:
    client = Client(REMOTE_ADDR="192.0.2.20")
    responses = [client.get("/login") for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert '"3-per-1m";q=3;w=60' in responses[0]["RateLimit-Policy"]
    denied = responses[3]
    # the default algorithm, a sliding window counter, may need up to period + period/limit
    assert denied["Content-Type"] == "application/problem+json" and 1 <= int(denied["Retry-After"]) <= 80
    assert denied.json()["policy"] == "3-per-1m"
    assert statuses(client, "/other", 3) == [200] * 3  # another view: its own count
    assert statuses(Client(REMOTE_ADDR="192.0.2.21"), "/login", 1) == [200]  # another address: its own


def test_block_false_counts_and_marks_the_request(mode: str) -> None:
    client = Client(REMOTE_ADDR="192.0.2.22")
    assert [client.get("/search").json()["limited"] for _ in range(3)] == [False, False, True]


def test_a_header_key_and_several_rates(mode: str) -> None:
    client = Client(REMOTE_ADDR="192.0.2.23")
    assert statuses(client, "/tenant", 3, HTTP_X_TENANT="acme") == [200, 200, 429]
    assert statuses(client, "/tenant", 1, HTTP_X_TENANT="other") == [200]
    policy = client.get("/tenant", HTTP_X_TENANT="third")["RateLimit-Policy"]
    assert '"2-per-1m";q=2;w=60' in policy and '"100-per-1h";q=100;w=3600' in policy


def test_a_group_shares_one_count_between_views(mode: str) -> None:
    client = Client(REMOTE_ADDR="192.0.2.24")
    assert statuses(client, "/shared-a", 2) + statuses(client, "/shared-b", 2) == [200, 200, 200, 429]


@pytest.mark.parametrize("path", ["/class-based", "/dispatch-decorated"])
def test_class_based_views(mode: str, path: str) -> None:
    """The class decorated, or its dispatch through method_decorator (a mark the middleware cannot
    see: the decorator then decides its own rules after the middleware's decision)."""
    assert statuses(Client(REMOTE_ADDR="192.0.2.27"), path, 3) == [200, 200, 429]


@pytest.mark.anyio
async def test_an_async_view(mode: str) -> None:
    client = AsyncClient(REMOTE_ADDR="192.0.2.25")
    assert [(await client.get("/async")).status_code for _ in range(3)] == [200, 200, 429]


def test_one_script_call_per_request(mode: str, redis_sync: redis.Redis) -> None:
    """The view's rule and the policy's (with the middleware) are decided in one EVALSHA."""
    client = Client(REMOTE_ADDR="192.0.2.26")
    client.get("/other")  # loads the script, starts the enforcer
    redis_sync.config_resetstat()
    response = client.get("/login")
    assert response.status_code == 200
    counts = command_counts(redis_sync)
    assert counts.get("evalsha", 0) + counts.get("eval", 0) == 1, counts
    if mode == "with-middleware":
        assert '"per-ip";q=60;w=60' in response["RateLimit-Policy"]  # the policy's rule came along


def test_bad_arguments_are_refused_at_import() -> None:
    with pytest.raises(ValueError, match="key 'cookie:x'"):
        ratelimit(key="cookie:x", rate="1/second")
    with pytest.raises(ValueError, match="month"):
        ratelimit(rate="100/month")
    with pytest.raises(ValueError, match="group"):
        ratelimit(rate="1/s", group="has space")
