"""``ratewarden up --redis cluster|sentinel``: the stack's Redis part alone (``start_redis``), on
real processes. A client made from its URL as the other parts make theirs can write and read,
a run-time change commits (a transaction on ``{ctl}`` keys, then a publish), and stopping it
leaves no process behind."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest

from ratewarden.enforcer.overrides import Override, OverrideStore
from ratewarden.enforcer.topology import parse_redis_url, sync_client
from ratewarden.stack import RedisKind, Stack, redis_processes, start_redis

from .helpers import process_alive


@pytest.mark.parametrize(("kind", "scheme", "processes"), [("cluster", "redis+cluster", 6),
                                                           ("sentinel", "redis+sentinel", 5)])
def test_the_stack_starts_a_cluster_or_sentinels_and_stops_every_process(
        kind: RedisKind, scheme: str, processes: int) -> None:
    url, deployment = start_redis(kind)
    pids = [process.pid for process in redis_processes(deployment)]
    try:
        assert url.startswith(f"{scheme}://")
        topology = parse_redis_url(url)
        assert topology.kind == kind
        assert len(pids) == processes and all(pid is not None and process_alive(pid) for pid in pids)
        client = sync_client(topology, socket_timeout=5)
        try:
            for n in range(20):  # on a cluster, keys of every primary
                assert client.set(f"up-topology:{n}", str(n))
            assert [client.get(f"up-topology:{n}") for n in range(20)] == [str(n).encode() for n in range(20)]
            store = OverrideStore(client)  # what the admin API and the worker's penalties write through
            store.set(Override(client_id="ip:192.0.2.1", block=True, source="test"))
            found = store.get("ip:192.0.2.1")
            assert found is not None and found.block
        finally:
            client.close()
    finally:
        deployment.stop()
    assert [pid for pid in pids if pid is not None and process_alive(pid)] == []


def test_every_kind_has_a_description_and_the_option_names_them_all() -> None:
    from ratewarden.cli import RedisChoice
    from ratewarden.stack import REDIS_STARTED

    assert set(get_args(RedisKind)) == set(REDIS_STARTED) == {choice.value for choice in RedisChoice}


def test_a_local_cluster_is_not_started_in_place_of_a_configured_redis(tmp_path: Path) -> None:
    stack = Stack(data_dir=tmp_path, redis="cluster", say=lambda _: None,
                  extra_env={"RATEWARDEN_REDIS_URL": "redis://127.0.0.1:1/0"})
    with pytest.raises(ValueError, match="RATEWARDEN_REDIS_URL is set"):
        stack.start()
    assert stack.processes == []
