"""Fixtures: a real Redis-compatible server (``RATEWARDEN_REDIS_URL`` or a local Valkey)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from ratewarden.local import KafkaServer, RedisServer, create_topics
from ratewarden.local_topologies import LocalCluster, LocalSentinels


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


@pytest.fixture(scope="session")
def local_cluster() -> Iterator[LocalCluster]:
    """A Redis Cluster for the session: 3 primaries, a replica each (tests that kill a node make their own)."""
    with LocalCluster(primaries=3, replicas=1) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def local_sentinels() -> Iterator[LocalSentinels]:
    """A primary, a replica and 3 Sentinels for the session (tests that fail it over make their own)."""
    with LocalSentinels() as setup:
        yield setup


@pytest.fixture(scope="session")
def clickhouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Embedded ClickHouse (chDB) for the session: one engine and one data directory per
    process, so tests share it and each uses a database of its own."""
    from ratewarden.analytics.client import connect

    yield connect(f"chdb://{tmp_path_factory.mktemp('chdb')}")


@pytest.fixture(scope="session")
def kafka_bootstrap_url() -> Iterator[str]:
    """A Kafka-protocol broker for the session (Tansu), unless RATEWARDEN_KAFKA_BOOTSTRAP names one."""
    if os.environ.get("RATEWARDEN_KAFKA_BOOTSTRAP"):
        yield os.environ["RATEWARDEN_KAFKA_BOOTSTRAP"]
        return
    with KafkaServer() as server:
        yield server.url


@pytest.fixture
def topic(kafka_bootstrap_url: str) -> str:
    """A fresh topic with 4 partitions."""
    name = f"rw-test-{uuid.uuid4().hex[:12]}"
    create_topics(kafka_bootstrap_url, {name: 4})
    return name


@pytest.fixture
def admin(admin_app: Any, redis_sync: redis.Redis) -> Iterator[Any]:
    """A test client of the module's ``admin_app`` fixture (the admin API), on an emptied Redis."""
    from fastapi.testclient import TestClient

    with TestClient(admin_app) as client:
        yield client
