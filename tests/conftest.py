"""Fixtures: a real Redis-compatible server (``RATEWARDEN_REDIS_URL`` or a local Valkey)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from ratewarden.local import RedisServer


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer | None]:
    """A local server for the session, unless RATEWARDEN_REDIS_URL names one."""
    if os.environ.get("RATEWARDEN_REDIS_URL"):
        yield None
        return
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer | None) -> str:
    return redis_server.url if redis_server else os.environ["RATEWARDEN_REDIS_URL"]


@pytest.fixture
def redis_sync(redis_url: str) -> Iterator[redis.Redis]:
    """A sync client on an emptied database."""
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    yield client
    client.close()
