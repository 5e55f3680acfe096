"""The enforcer on a real Sentinel set-up (a primary, a replica, three Sentinels), reached by
``redis+sentinel://``: the algorithm and run-time change tests run here again, unchanged."""

from __future__ import annotations

import time

import pytest

from ratewarden.enforcer.topology import parse_redis_url
from ratewarden.local_topologies import LocalSentinels

from .deployment_suite import *  # noqa: F403 - the tests every deployment runs, collected here
from .helpers import wait_until

pytestmark = pytest.mark.anyio  # the async tests imported above carry it in their own modules


@pytest.fixture
def deployment(local_sentinels: LocalSentinels) -> LocalSentinels:
    """Where the shared tests run: the session's Sentinel set-up."""
    return local_sentinels


def test_the_url_names_the_sentinels_and_the_primary(local_sentinels: LocalSentinels) -> None:
    topology = parse_redis_url(local_sentinels.url)
    assert topology.kind == "sentinel" and topology.service == local_sentinels.master_name
    assert [node.port for node in topology.nodes] == [s.port for s in local_sentinels.sentinels]


def test_the_wsgi_enforcer_follows_the_sentinels_to_the_new_primary() -> None:
    from ratewarden.enforcer import EnforcerSettings, SyncEnforcer, policy_from_mapping

    rules = [{"name": "r", "algorithm": "fixed_window", "limit": 3, "period": "1h", "scope": ["ip"]}]
    with LocalSentinels(down_after_ms=1000) as setup:
        enforcer = SyncEnforcer(policy_from_mapping({"tiers": {"anonymous": {"rules": rules}, "free": {}}}),
                                EnforcerSettings(redis_url=setup.url, redis_budget_ms=2000, local_deny_cache=False))
        enforcer.start()
        identity = enforcer.identify(ip="192.0.2.5")
        decisions = [enforcer.decide(identity, "GET /x") for _ in range(4)]
        assert [(d.allowed, d.degraded) for d in decisions] == [(True, False)] * 3 + [(False, False)]
        setup.primary.kill()
        killed = time.monotonic()
        wait_until(lambda: setup.master_port() != setup.primary.port, 20, "the Sentinels' failover")
        promoted = time.monotonic() - killed
        back = wait_until(lambda: not enforcer.decide(identity, "GET /y").degraded, 5, "decisions back on Redis")
        print(f"WSGI enforcer: primary promoted {promoted:.2f} s after kill -9, back on Redis {back:.2f} s later")
        enforcer.close()
