"""The local Redis Cluster and Sentinel set-ups: real Valkey processes, real failovers."""

from __future__ import annotations

import time

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.sentinel import Sentinel

from ratewarden.local_topologies import LocalCluster, LocalSentinels

from .helpers import wait_until


def test_a_three_primary_cluster_serves_every_slot_and_fails_over() -> None:
    with LocalCluster(primaries=3, replicas=1, node_timeout_ms=1000) as cluster:
        seeds = [ClusterNode(node.host, node.port) for node in cluster.primaries]
        client = RedisCluster(startup_nodes=seeds, decode_responses=True)
        keys = [f"{{client-{n}}}:count" for n in range(60)]
        for key in keys:
            client.incr(key)
        owners = {cluster.primary_of(key).port for key in keys}
        assert owners == {node.port for node in cluster.primaries}  # 60 keys reach all three primaries

        victim = cluster.primary_of(keys[0])
        victim.kill()
        started = time.monotonic()
        while cluster.primary_of(keys[0]).port == victim.port:
            assert time.monotonic() - started < 15, "no replica was promoted"
            time.sleep(0.1)
        promoted_after = time.monotonic() - started
        cluster.wait_healthy()
        client = RedisCluster(startup_nodes=[ClusterNode(n.host, n.port) for n in cluster.nodes if n.running],
                              decode_responses=True)
        print(f"replica promoted {promoted_after:.1f} s after kill -9 (node timeout 1.0 s)")
        assert client.incr(keys[0]) >= 1
        client.close()


def test_sentinels_name_the_new_primary_after_it_dies() -> None:
    with LocalSentinels(replicas=1, sentinels=3, down_after_ms=1000) as setup:
        sentinel = Sentinel([(s.host, s.port) for s in setup.sentinels], socket_timeout=1)
        primary = sentinel.master_for(setup.master_name, socket_timeout=3)
        primary.set("x", "1")
        assert primary.execute_command("WAIT", 1, 1000) == 1  # on the replica before the primary dies
        assert setup.master_port() == setup.primary.port
        setup.primary.kill()
        started = time.monotonic()
        while setup.master_port() == setup.primary.port:
            assert time.monotonic() - started < 20, "the Sentinels did not fail over"
            time.sleep(0.1)
        print(f"Sentinels promoted a replica {time.monotonic() - started:.1f} s after kill -9 (down-after 1.0 s)")
        assert setup.master_port() == setup.replicas[0].port

        def follows() -> bool:  # a Sentinel may name the new primary a moment before it calls it healthy
            try:
                return bool(primary.set("y", "2"))
            except redis.ConnectionError:  # MasterNotFoundError among them
                return False
        waited = wait_until(follows, 5, "the master_for client following the switch")
        print(f"the client wrote to the new primary {waited:.2f} s after the Sentinels named it")
        assert primary.get("x") == b"1"
