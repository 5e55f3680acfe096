"""The request path on a Redis Cluster: a slot map, one pipelined connection per primary.

A request's counters can hash to slots of different primaries. :meth:`split` groups a
call's keys by the node that serves them now; the enforcer sends one script per group, at
once (one round trip of latency), each all-or-nothing on its node: its keys may span slots
of that node: it declares one key (a cluster routes a script by its declared keys, which must
share a slot), finds the others in its arguments, and says so (``allow-cross-slot-keys``).

MOVED updates the slot's owner and retries; ASK retries once on the importing node after
ASKING; TRYAGAIN retries after a pause; a lost connection or CLUSTERDOWN fails the call (the
tier's fail mode decides), keeps that node's calls failing at once for ``retry_after_s`` (the
other nodes' calls go on), and reads the slot map again from any node that answers, every
tenth of a second while a node is down, so decisions return to Redis by themselves as soon as a
replica is promoted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import lru_cache
from typing import Any

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import RedisError, ResponseError

from .logs import get_logger
from .outage import OutageLog
from .scripts import LuaScript
from .topology import NodeAddress, RedisTopology, node_client
from .transport import AsyncScriptRunner

__all__ = ["AsyncClusterRunner", "CrossSlotScripts", "slot_of"]

log = get_logger("ratewarden.enforcer")

_REFRESH_EVERY_S = 0.1  # while a node is down: a promoted replica is found within this
_REDIRECTS = 3


@lru_cache(maxsize=1 << 16)  # the same few keys per caller, asked for twice per decision (split, then call)
def slot_of(key: str) -> int:
    """The cluster slot of ``key`` (by its ``{hash tag}`` if it has one)."""
    return int(key_slot(key.encode()))


class CrossSlotScripts:
    """Script calls whose keys span slots of one node, made routable.

    A cluster routes a script by its declared keys, which must share a slot; such a call
    declares its first key only and passes them all in ``ARGV``, where a prelude of the script
    (which says ``allow-cross-slot-keys``) puts them back into ``KEYS``."""

    def __init__(self) -> None:
        self._variants: dict[str, LuaScript] = {}

    def prepare(self, lua: LuaScript, keys: Sequence[Any],
                args: Sequence[Any]) -> tuple[LuaScript, Sequence[Any], Sequence[Any]]:
        """(script, keys, args) to send: unchanged when every key shares one slot."""
        slot = slot_of(keys[0])
        if all(slot_of(key) == slot for key in keys[1:]):
            return lua, keys, args
        variant = self._variants.get(lua.sha)
        if variant is None:
            prelude = ("#!lua flags=allow-cross-slot-keys\n"
                       "local n = tonumber(table.remove(ARGV, 1))\n"
                       "for i = 1, n do KEYS[i] = table.remove(ARGV, 1) end\n")
            variant = self._variants[lua.sha] = LuaScript(lua.name, prelude + lua.source)
        return variant, keys[:1], (len(keys), *keys, *args)


class AsyncClusterRunner:
    """The :class:`~ratewarden.enforcer.transport.AsyncScriptRunner` interface over a cluster's primaries."""

    def __init__(self, topology: RedisTopology, timeout_s: float = 0.05, stale_after_s: float = 2.0,
                 retry_after_s: float = 1.0) -> None:
        self.topology = topology
        self.timeout_s = timeout_s
        self.stale_after_s = stale_after_s
        self.retry_after_s = retry_after_s
        # a node that failed is not asked again before this (its calls fail at once, the others go on)
        self._down_until: dict[NodeAddress, float] = {}
        self._owners: list[NodeAddress | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        self._runners: dict[NodeAddress, AsyncScriptRunner] = {}
        self._scripts = CrossSlotScripts()
        self._refreshing: asyncio.Task[None] | None = None
        self._refreshed_at = 0.0
        # the slot map is asked for every 0.1 s while nodes fail: log the outage, not each attempt
        self._outage = OutageLog(log, "cluster", server=topology.describe(), setting="RATEWARDEN_REDIS_URL")
        self._fired: set[asyncio.Task[None]] = set()  # settlements and refunds under way

    # -- routing -------------------------------------------------------------

    def split(self, keys: Sequence[str]) -> list[list[int]] | None:
        """Indices of ``keys`` grouped by the node serving them now; None when one node serves all.

        A slot whose owner is not known yet is a group of its own (never a cross-slot error)."""
        owners: dict[object, list[int]] = {}
        table = self._owners
        for index, key in enumerate(keys):
            slot = slot_of(key)
            owners.setdefault(table[slot] or slot, []).append(index)
        return None if len(owners) <= 1 else list(owners.values())

    def owner(self, key: str) -> NodeAddress | None:
        """The node serving ``key`` as far as the slot map knows."""
        return self._owners[slot_of(key)]

    def _runner(self, node: NodeAddress) -> AsyncScriptRunner:
        runner = self._runners.get(node)
        if runner is None:
            runner = self._runners[node] = AsyncScriptRunner(node, self.timeout_s, self.stale_after_s)
        return runner

    async def _node_for(self, key: str) -> NodeAddress:
        slot = slot_of(key)
        node = self._owners[slot]
        if node is None:
            await self.refresh()
            node = self._owners[slot]
            if node is None:
                raise ConnectionError(f"no node of the cluster serves slot {slot}")
        return node

    async def _routed(self, key: str, send: Callable[[AsyncScriptRunner], Awaitable[Any]],
                      script: LuaScript | None = None) -> Any:
        """``send`` on the node serving ``key``, following MOVED, ASK and TRYAGAIN (``script``: the one
        ``send`` runs, loaded on an importing node first, since ASKING covers one command only)."""
        for _ in range(_REDIRECTS):
            node = await self._node_for(key)
            if self._down_until and time.monotonic() < self._down_until.get(node, 0.0):
                self.refresh_soon()  # a replica may have taken its slots over
                raise ConnectionError(f"Redis node {node} is unavailable (retried after a pause)")
            runner = self._runner(node)
            try:
                return await send(runner)
            except ResponseError as exc:
                kind, _, rest = str(exc).partition(" ")
                if kind == "MOVED":
                    slot, _, target = rest.partition(" ")
                    self._owners[int(slot)] = self._address(target)
                    self.refresh_soon()
                elif kind == "ASK":
                    importing = self._runner(self._address(rest.partition(" ")[2]))
                    if script is not None:  # else its NOSCRIPT retry would go without ASKING
                        importing.command("SCRIPT", "LOAD", script.source)
                    importing.command("ASKING")  # queued just before the call, on the same connection
                    return await send(importing)
                elif kind == "TRYAGAIN":  # a multi-key call during resharding
                    await asyncio.sleep(self.timeout_s / 4)
                else:
                    if kind in ("CLUSTERDOWN", "READONLY"):
                        self.refresh_soon()
                    raise
            except (ConnectionError, OSError, TimeoutError):
                self._down_until[node] = time.monotonic() + self.retry_after_s
                self.refresh_soon()
                raise
        raise ConnectionError(f"the cluster redirected a call {_REDIRECTS} times")

    def _address(self, host_port: str) -> NodeAddress:
        host, _, port = host_port.rpartition(":")
        return self.topology.node(host or self.topology.nodes[0].host, int(port))

    # -- the runner interface -------------------------------------------------

    def call(self, lua: LuaScript, keys: Sequence[Any], args: Sequence[Any]) -> Awaitable[Any]:
        """One script call; every key must be served by one node (see :meth:`split`)."""
        script, keys, args = self._scripts.prepare(lua, keys, args)
        return self._sent(keys[0], lambda runner: runner.call(script, keys, args), script)

    def _sent(self, key: str, send: Callable[[AsyncScriptRunner], asyncio.Future[Any]],
              script: LuaScript | None = None) -> Awaitable[Any]:
        """``send`` on the node the slot map names: its reply as it comes (no task, no coroutine), or,
        when the node redirects the call, the routed call's (:meth:`_routed`)."""
        node = self._owners[slot_of(key)]
        if node is None or (self._down_until and time.monotonic() < self._down_until.get(node, 0.0)):
            return self._routed(key, send, script)
        first = send(self._runner(node))
        reply = first.get_loop().create_future()

        def answered(future: asyncio.Future[Any]) -> None:
            if reply.done():
                return
            if future.cancelled():
                reply.cancel()
                return
            error = future.exception()
            if error is None:
                reply.set_result(future.result())
            elif isinstance(error, ResponseError) and str(error).startswith(("MOVED", "ASK", "TRYAGAIN")):
                routed = asyncio.ensure_future(self._routed(key, send, script))
                routed.add_done_callback(lambda done: _chain(done, reply))
            else:
                if isinstance(error, (ConnectionError, OSError, TimeoutError)):
                    self._down_until[node] = time.monotonic() + self.retry_after_s
                    self.refresh_soon()
                elif str(error).startswith(("CLUSTERDOWN", "READONLY")):
                    self.refresh_soon()
                reply.set_exception(error)

        first.add_done_callback(answered)
        return reply

    def execute(self, *args: Any) -> Awaitable[Any]:
        """One command on the node serving its key (``args[1]``); all of ratewarden's commands name a key."""
        if len(args) < 2:
            raise ValueError(f"{args[0]!r}: a command sent through a cluster runner must name a key")
        return self._sent(args[1], lambda runner: runner.execute(*args))

    def command(self, *args: Any) -> None:
        """A command no one waits for, on the node serving its key (e.g. releasing a lease)."""
        node = self._owners[slot_of(args[1])]
        if node is not None:  # else the map is being refreshed; leases also expire by themselves
            self._runner(node).command(*args)

    def fire(self, lua: LuaScript, keys: Sequence[Any], args: Sequence[Any]) -> None:
        """A script call no one waits for (a settlement or a refund)."""
        task = asyncio.get_running_loop().create_task(self._fire(lua, keys, args))
        self._fired.add(task)
        task.add_done_callback(self._fired.discard)
        task.add_done_callback(_log_failure)

    async def _fire(self, lua: LuaScript, keys: Sequence[Any], args: Sequence[Any]) -> None:
        await self.call(lua, keys, args)

    # -- the slot map --------------------------------------------------------

    def refresh_soon(self) -> None:
        """Read the slot map again in the background (at most one refresh at a time)."""
        if self._refreshing is None and time.monotonic() - self._refreshed_at >= _REFRESH_EVERY_S:
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh())

    async def refresh(self) -> None:
        """Read the slot map now (joining a refresh under way)."""
        if self._refreshing is None:
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh())
        await asyncio.shield(self._refreshing)

    async def _refresh(self) -> None:
        try:
            candidates = list(dict.fromkeys([*filter(None, self._owners), *self.topology.nodes]))
            for node in candidates:
                client = node_client(node, socket_timeout=1.0, socket_connect_timeout=1.0)
                try:
                    slots = await client.execute_command("CLUSTER SLOTS")
                except (RedisError, OSError):
                    continue
                finally:
                    await client.aclose()
                owners: list[NodeAddress | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
                for low, high, primary, *_replicas in slots:
                    host = primary[0].decode() if isinstance(primary[0], bytes) else primary[0]
                    owner = self.topology.node(host or node.host, int(primary[1]))
                    owners[int(low):int(high) + 1] = [owner] * (int(high) - int(low) + 1)
                self._owners = owners
                self._down_until = {n: t for n, t in self._down_until.items() if n in owners}
                self._outage.succeeded()
                return
            self._outage.failed(f"no node answered CLUSTER SLOTS (tried {','.join(map(str, candidates))})")
        finally:
            self._refreshed_at = time.monotonic()
            self._refreshing = None

    async def aclose(self) -> None:
        if self._fired:  # give back what denied requests took before the connections go
            await asyncio.wait(list(self._fired), timeout=max(1.0, 4 * self.timeout_s))
        if self._refreshing is not None:
            self._refreshing.cancel()
        for runner in self._runners.values():
            await runner.aclose()
        self._runners.clear()


def _chain(source: asyncio.Future[Any], target: asyncio.Future[Any]) -> None:
    if target.done():
        return
    if source.cancelled():
        target.cancel()
    elif source.exception() is not None:
        target.set_exception(source.exception())  # type: ignore[arg-type]
    else:
        target.set_result(source.result())


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("settle_failed", error=type(task.exception()).__name__)
