"""The connections an asyncio enforcer makes for a deployment: the request path's runner, and the
redis-py client of run-time state and of the change feed."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel as AsyncSentinel

from .changes import VERSION_KEY
from .cluster import AsyncClusterRunner
from .topology import NodeAddress, RedisTopology, node_client
from .transport import AddressSource, AsyncScriptRunner

__all__ = ["ControlClient", "async_runner"]


def _sentinel_source(topology: RedisTopology) -> AddressSource:
    """The primary the Sentinels name now (asked at every reconnection of the runner)."""
    assert topology.service is not None
    sentinel = AsyncSentinel([(n.host, n.port) for n in topology.nodes], socket_timeout=1.0)
    service = topology.service

    async def current_primary() -> NodeAddress:
        host, port = await sentinel.discover_master(service)
        return topology.node(host, int(port))

    return current_primary


def async_runner(topology: RedisTopology, timeout_s: float,
                 retry_after_s: float) -> AsyncScriptRunner | AsyncClusterRunner:
    """The request path's pipelined runner for ``topology``."""
    if topology.kind == "cluster":
        return AsyncClusterRunner(topology, timeout_s, retry_after_s=retry_after_s)
    if topology.kind == "sentinel":
        return AsyncScriptRunner(topology.nodes[0], timeout_s, source=_sentinel_source(topology))
    return AsyncScriptRunner(topology.nodes[0], timeout_s)


class ControlClient:
    """The redis-py client of run-time state (overrides, tiers, API keys) and of the change feed.

    Every key of that state shares the ``{ctl}`` hash tag: on a cluster it all lives on the node
    serving that slot, so a plain client of that node reads it in one transaction, and subscribes
    there (a message published on any node of a cluster reaches every node). After a failover
    the runner's slot map names the new node, and the next :meth:`current` connects to it."""

    def __init__(self, client: aioredis.Redis | None, runner: AsyncScriptRunner | AsyncClusterRunner) -> None:
        self._client = client
        self._runner = runner
        self._node: NodeAddress | None = None
        self._stale: list[aioredis.Redis] = []

    def current(self) -> aioredis.Redis:
        runner = self._runner
        if not isinstance(runner, AsyncClusterRunner):
            assert self._client is not None, "one server: the enforcer made or was given the client"
            return self._client
        node = runner.owner(VERSION_KEY) or runner.topology.nodes[0]
        if node != self._node or self._client is None:
            if self._client is not None:
                self._stale.append(self._client)
            self._node = node
            self._client = node_client(node, socket_timeout=1.0, socket_connect_timeout=1.0)
        return self._client

    def failed(self) -> None:
        """The client's server did not answer: on a cluster, read the slot map again."""
        if isinstance(self._runner, AsyncClusterRunner):
            self._runner.refresh_soon()

    async def aclose(self) -> None:
        for client in [*self._stale, *([self._client] if self._client is not None else [])]:
            await client.aclose()
        self._stale.clear()
