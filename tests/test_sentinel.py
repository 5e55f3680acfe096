"""The enforcer on a real Sentinel set-up (a primary, a replica, three Sentinels), reached by
``redis+sentinel://``: the algorithm and run-time change tests run here again, unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ratewarden.enforcer.topology import parse_redis_url, sync_client
from ratewarden.local_topologies import LocalSentinels

from .test_algorithms import (  # noqa: F401 - collected again here, through the Sentinels
    test_buckets_refill_at_rate_up_to_burst,
    test_concurrency_slots_are_released_and_leaked_ones_expire,
    test_every_key_gets_a_ttl,
    test_fixed_window,
    test_gcra_raising_a_limit_takes_effect_at_once,
    test_sliding_window_counter_weights_the_previous_window,
    test_sliding_window_log,
)
from .test_live_changes import (  # noqa: F401
    test_a_tier_changed_at_run_time_applies_within_a_second_and_clearing_restores_the_file,
    test_api_keys_are_stored_hashed_and_revocation_is_live,
    test_override_is_picked_up_after_a_lost_subscription,
    test_override_set_through_one_instance_is_honoured_by_another,
    test_tier_allow_list_and_custom_limit_overrides,
)

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
