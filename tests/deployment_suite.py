"""The tests every Redis deployment runs again, unchanged: each algorithm's allow/deny/reset and
run-time changes (overrides, tiers, API keys) seen by a second enforcer. A module that imports
``*`` from here and defines a ``deployment`` fixture (anything with a ``url``) runs them on that
deployment (``test_cluster``, ``test_sentinel``): the ``redis_url`` and ``redis_sync`` fixtures
here replace the single server's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ratewarden.enforcer.topology import parse_redis_url, sync_client

from .test_algorithms import (
    test_buckets_refill_at_rate_up_to_burst,
    test_concurrency_slots_are_released_and_leaked_ones_expire,
    test_every_key_gets_a_ttl,
    test_fixed_window,
    test_gcra_raising_a_limit_takes_effect_at_once,
    test_sliding_window_counter_weights_the_previous_window,
    test_sliding_window_log,
)
from .test_live_changes import (
    test_a_tier_changed_at_run_time_applies_within_a_second_and_clearing_restores_the_file,
    test_api_keys_are_stored_hashed_and_revocation_is_live,
    test_override_is_picked_up_after_a_lost_subscription,
    test_override_set_through_one_instance_is_honoured_by_another,
    test_tier_allow_list_and_custom_limit_overrides,
)


@pytest.fixture
def redis_url(deployment: Any) -> str:
    return str(deployment.url)


@pytest.fixture
def redis_sync(deployment: Any) -> Iterator[Any]:
    """A redis-py client of the deployment, emptied first."""
    client = sync_client(parse_redis_url(deployment.url))
    client.flushall()
    yield client
    client.close()


__all__ = [
    "redis_sync",
    "redis_url",
    "test_buckets_refill_at_rate_up_to_burst",
    "test_concurrency_slots_are_released_and_leaked_ones_expire",
    "test_every_key_gets_a_ttl",
    "test_fixed_window",
    "test_gcra_raising_a_limit_takes_effect_at_once",
    "test_sliding_window_counter_weights_the_previous_window",
    "test_sliding_window_log",
    "test_a_tier_changed_at_run_time_applies_within_a_second_and_clearing_restores_the_file",
    "test_api_keys_are_stored_hashed_and_revocation_is_live",
    "test_override_is_picked_up_after_a_lost_subscription",
    "test_override_set_through_one_instance_is_honoured_by_another",
    "test_tier_allow_list_and_custom_limit_overrides",
]
