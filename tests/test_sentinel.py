"""The enforcer on a real Sentinel set-up (a primary, a replica, three Sentinels), reached by
``redis+sentinel://``: the algorithm and run-time change tests run here again, unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ratewarden.enforcer.topology import parse_redis_url, sync_client
from ratewarden.local_topologies import LocalSentinels

from .deployment_suite import *  # noqa: F403 - the tests every deployment runs, collected here

pytestmark = pytest.mark.anyio  # the async tests imported above carry it in their own modules


@pytest.fixture
def redis_url(local_sentinels: LocalSentinels) -> str:
    return local_sentinels.url


@pytest.fixture
def redis_sync(local_sentinels: LocalSentinels) -> Iterator[Any]:
    """A client of the primary the Sentinels name, emptied."""
    client = sync_client(parse_redis_url(local_sentinels.url))
    client.flushall()
    yield client
    client.close()


def test_the_url_names_the_sentinels_and_the_primary(local_sentinels: LocalSentinels) -> None:
    topology = parse_redis_url(local_sentinels.url)
    assert topology.kind == "sentinel" and topology.service == local_sentinels.master_name
    assert [node.port for node in topology.nodes] == [s.port for s in local_sentinels.sentinels]
