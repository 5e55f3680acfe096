"""Lapsed overrides go: the worker's purger removes every lapsed override in one pass, reading
only the lapsed part of the expiry index, so an enforcer's reload costs what it did before they
existed (measured by entries fetched and parsed, not by time)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from ratewarden.enforcer.live import SyncLiveState
from ratewarden.enforcer.overrides import OVERRIDES_EXPIRY, OVERRIDES_HASH, Override, OverrideStore
from ratewarden.stream.upkeep import OverridePurger

from .stream_support import start_worker, worker_env

LAPSED = 10_000


def reload_cost(client: redis.Redis) -> int:
    """Entries an enforcer fetches and parses on a full reload of its run-time state."""
    live = SyncLiveState(client, None)
    live.reload()
    return len(live.overrides)


@pytest.mark.anyio
async def test_ten_thousand_lapsed_overrides_go_in_one_purge_pass(redis_sync: redis.Redis) -> None:
    store = OverrideStore(redis_sync)
    now = time.time()
    store.set(Override(client_id="k:operator", block=True, reason="no expiry"))
    store.set(Override(client_id="k:penalised", block=True, source="stream:scraping", expires_at=now + 3600))
    before = reload_cost(redis_sync)
    assert before == 2

    purger = OverridePurger(lambda: store, interval_s=0.2)
    await purger.start()
    try:
        for i in range(LAPSED):  # as penalties are written: one change each
            store.set(Override(client_id=f"ip:10.{i // 65536}.{i // 256 % 256}.{i % 256}", block=True,
                               source="stream:credential_stuffing", expires_at=now - 1))
        written_at_pass = purger.passes
        while purger.passes < written_at_pass + 2:  # a whole pass begun after the last write
            await purger.sleep(0.05)
    finally:
        await purger.stop()

    assert redis_sync.hlen(OVERRIDES_HASH) == 2
    assert redis_sync.zrange(OVERRIDES_EXPIRY, 0, -1) == [b"k:penalised"]
    assert purger.purged == LAPSED
    assert reload_cost(redis_sync) == before


def test_a_purge_reads_only_what_lapsed_and_spares_an_override_set_again(redis_sync: redis.Redis) -> None:
    store = OverrideStore(redis_sync)
    store.set(Override(client_id="ip:203.0.113.1", block=True, expires_at=100.0))
    store.set(Override(client_id="ip:203.0.113.2", block=True, expires_at=100.0))
    store.set(Override(client_id="ip:203.0.113.2", block=True, expires_at=time.time() + 60))  # renewed
    store.set(Override(client_id="ip:203.0.113.3", block=True, expires_at=100.0))
    store.set(Override(client_id="ip:203.0.113.3", block=True))  # made permanent: leaves the index
    assert store.purge_expired(batch=1) == 1  # batches loop until nothing is left
    assert sorted(o.client_id for o in store.list(include_expired=True)) == ["ip:203.0.113.2", "ip:203.0.113.3"]
    version = redis_sync.get("rw:{ctl}:version")
    assert store.purge_expired() == 0
    assert redis_sync.get("rw:{ctl}:version") == version  # nothing went: enforcers have nothing to reload


def test_overrides_written_before_the_index_are_indexed_then_purged(redis_sync: redis.Redis) -> None:
    lapsed = Override(client_id="k:old", block=True, expires_at=100.0)
    redis_sync.hset(OVERRIDES_HASH, "k:old", lapsed.model_dump_json())  # as an older version wrote it
    redis_sync.hset(OVERRIDES_HASH, "k:forever", Override(client_id="k:forever", allow=True).model_dump_json())
    store = OverrideStore(redis_sync)
    assert store.purge_expired() == 0  # not indexed yet
    assert store.index_expiring() == 1
    assert store.purge_expired() == 1
    assert [o.client_id for o in store.list(include_expired=True)] == ["k:forever"]


def test_a_running_worker_purges_lapsed_overrides(kafka_bootstrap_url: str, redis_url: str,
                                                  redis_sync: redis.Redis, tmp_path: Path) -> None:
    """The worker runs the purger: lapsed penalties leave Redis without anyone asking."""
    store = OverrideStore(redis_sync)
    store.set(Override(client_id="k:operator", block=True))
    for i in range(LAPSED):
        store.set(Override(client_id=f"ip:10.9.{i // 256}.{i % 256}", block=True, source="stream:scraping",
                           expires_at=time.time() - 1))
    assert reload_cost(redis_sync) == LAPSED + 1
    env = worker_env(kafka_bootstrap_url, redis_url, tmp_path, RATEWARDEN_OVERRIDE_PURGE_INTERVAL_S="1")
    worker = start_worker(env, tmp_path)
    try:
        deadline = time.monotonic() + 60
        while redis_sync.hlen(OVERRIDES_HASH) > 1:
            assert time.monotonic() < deadline, f"{redis_sync.hlen(OVERRIDES_HASH)} overrides left"
            time.sleep(0.2)
    finally:
        worker.stop(timeout_s=15)
    assert reload_cost(redis_sync) == 1 and redis_sync.zcard(OVERRIDES_EXPIRY) == 0
