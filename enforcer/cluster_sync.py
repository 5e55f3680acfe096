"""The request path of threads (WSGI) on a Redis Cluster, through redis-py's cluster client.

redis-py keeps the slot map and follows MOVED, ASK and failovers; this runner adds what the
enforcer needs on top: a request's keys grouped by node (:meth:`split`), scripts whose keys span
slots of one node (:class:`~ratewarden.enforcer.cluster.CrossSlotScripts`), and the calls of one
request on several nodes sent together (:meth:`call_many`: written to every node before any
reply is read, so one round trip of latency).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.cluster import RedisCluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ConnectionError,
    MovedError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TimeoutError,
    TryAgainError,
)

from .cluster import CrossSlotScripts, slot_of
from .scripts import LuaScript

__all__ = ["SyncClusterRunner"]

Call = tuple[LuaScript, Sequence[Any], Sequence[Any]]
# made again through redis-py's client, which refreshes its slot map and follows redirections
_RETRIED = (MovedError, AskError, TryAgainError, ClusterDownError, ConnectionError, TimeoutError)


class SyncClusterRunner:
    """The :class:`~ratewarden.enforcer.transport.SyncScriptRunner` interface over a cluster."""

    def __init__(self, client: RedisCluster) -> None:
        self.client = client
        self._scripts = CrossSlotScripts()

    def split(self, keys: Sequence[str]) -> list[list[int]] | None:
        """Indices of ``keys`` grouped by the node serving them now; None when one node serves all."""
        nodes: dict[object, list[int]] = {}
        manager = self.client.nodes_manager
        for index, key in enumerate(keys):
            slot = slot_of(key)
            try:
                owner: object = manager.get_node_from_slot(slot).name
            except (RedisClusterException, IndexError, KeyError):  # not known yet: a group of its own
                owner = slot
            nodes.setdefault(owner, []).append(index)
        return None if len(nodes) <= 1 else list(nodes.values())

    def call(self, lua: LuaScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        script, keys, args = self._scripts.prepare(lua, keys, args)
        try:
            return self.client.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return self.client.eval(script.source, len(keys), *keys, *args)

    def call_many(self, calls: Sequence[Call]) -> list[Any]:
        """Every call at once, on the nodes that serve them; each reply, or the exception it met.

        Each call is written to its node before any reply is read (one round trip of latency).
        A call that meets a redirection, a lost script or a connection failure is made again
        through redis-py's client, which follows the cluster's changes."""
        prepared = [self._scripts.prepare(*call) for call in calls]
        sent: list[tuple[Any, Any]] = []
        results: list[Any] = []
        try:
            for script, keys, args in prepared:
                pool = self.client.get_redis_connection(self.client.get_node_from_key(keys[0])).connection_pool
                connection = pool.get_connection()
                sent.append((pool, connection))
                connection.send_packed_command(connection.pack_command("EVALSHA", script.sha, len(keys), *keys, *args))
            for _pool, connection in sent:
                try:
                    results.append(connection.read_response())
                except ResponseError as exc:
                    results.append(exc)
                except (RedisError, OSError) as exc:
                    connection.disconnect()
                    results.append(exc)
        except (RedisError, RedisClusterException, OSError) as exc:  # before every call was out
            for _pool, connection in sent[len(results):]:
                connection.disconnect()  # written to but not read: not to be reused
            results += [exc] * (len(calls) - len(results))
        finally:
            for pool, connection in sent:
                pool.release(connection)
        for index, result in enumerate(results):
            if isinstance(result, (NoScriptError, *_RETRIED)):
                try:
                    results[index] = self.call(*calls[index])
                except (RedisError, RedisClusterException, OSError) as exc:
                    results[index] = exc
        return results

    def command(self, *args: Any) -> None:
        try:
            self.client.execute_command(*args)
        except (RedisError, RedisClusterException, OSError):
            pass  # leases expire by themselves
