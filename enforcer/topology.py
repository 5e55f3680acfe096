"""Where the limits live: one Redis, a Redis Cluster, or a primary followed through Sentinel.

``RATEWARDEN_REDIS_URL`` takes, besides ``redis://``, ``rediss://`` and ``unix://``, the
forms the ``limits`` library uses:

- ``redis+cluster://[user:password@]host:port[,host:port...]``: seed nodes of a cluster
  (``rediss+cluster://`` for TLS); the slot map is read from the cluster.
- ``redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]``: Sentinels and
  the name of the primary they watch; the credentials are the primary's.

This module parses those URLs and builds the redis-py clients of the parts off the request
path (API keys, overrides, tiers, the change feed); the request path has its own transport.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.cluster import ClusterNode, RedisCluster
from redis.sentinel import Sentinel

__all__ = ["NodeAddress", "RedisTopology", "async_client", "node_client", "parse_redis_url", "sync_client"]

Kind = Literal["single", "cluster", "sentinel"]
_SCHEMES: dict[str, tuple[Kind, bool]] = {
    "redis": ("single", False), "rediss": ("single", True), "unix": ("single", False),
    "redis+cluster": ("cluster", False), "rediss+cluster": ("cluster", True),
    "redis+sentinel": ("sentinel", False), "rediss+sentinel": ("sentinel", True),
}


@dataclass(frozen=True, slots=True)
class NodeAddress:
    """One server to connect to, with what to say once connected."""

    host: str = "127.0.0.1"
    port: int = 6379
    tls: bool = False
    username: str | None = None
    password: str | None = None
    db: int = 0
    unix_path: str | None = None

    def __str__(self) -> str:
        return self.unix_path or f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class RedisTopology:
    """A parsed ``RATEWARDEN_REDIS_URL``: the kind of deployment and how to reach it."""

    kind: Kind
    url: str = field(repr=False)  # the single-server URL as given (redis-py reads it itself)
    nodes: tuple[NodeAddress, ...]  # the server; the cluster's seeds; the Sentinels
    service: str | None = None  # Sentinel: the primary's name

    def node(self, host: str, port: int) -> NodeAddress:
        """A node of this deployment at ``host:port``, with its credentials and TLS."""
        seed = self.nodes[0]
        return NodeAddress(host, port, seed.tls, seed.username, seed.password, seed.db)


def _host_port(text: str, default_port: int, url: str) -> tuple[str, int]:
    if text.startswith("["):  # [IPv6]:port
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = text.partition(":")
    if not host:
        raise ValueError(f"RATEWARDEN_REDIS_URL {url!r}: a host is missing")
    try:
        return host, int(port) if port else default_port
    except ValueError:
        raise ValueError(f"RATEWARDEN_REDIS_URL {url!r}: port {port!r} is not a number") from None


def _query_db(query: str) -> int | None:
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if name == "db" and value:
            return int(value)
    return None


def parse_redis_url(url: str) -> RedisTopology:
    """The deployment ``url`` names; a ``ValueError`` naming the setting and the problem if malformed."""
    scheme = url.partition("://")[0].lower()
    if scheme not in _SCHEMES or "://" not in url:
        raise ValueError(f"RATEWARDEN_REDIS_URL {url!r}: use redis://, rediss://, unix://, "
                         "redis+cluster://host:port,... or redis+sentinel://host:port,.../service")
    kind, tls = _SCHEMES[scheme]
    if kind == "single":
        parts = urlsplit(url)
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        db = _query_db(parts.query)  # redis-py honours ?db= too: both sides must use the same database
        if scheme == "unix":
            node = NodeAddress(unix_path=parts.path, username=username, password=password, db=db or 0)
        else:
            path_db = (parts.path or "/").strip("/")
            node = NodeAddress(parts.hostname or "127.0.0.1", parts.port or 6379, tls, username, password,
                               db if db is not None else int(path_db or 0))
        return RedisTopology("single", url, (node,))
    rest = url.partition("://")[2]
    userinfo, _, hosts = rest.rpartition("@")
    hosts, _, path = hosts.partition("/")
    username, _, password = userinfo.partition(":") if ":" in userinfo else ("", "", userinfo)
    default_port = 26379 if kind == "sentinel" else 6379
    segments = [segment for segment in path.split("/") if segment]
    service = segments[0] if segments else None
    if kind == "sentinel" and not service:
        raise ValueError(f"RATEWARDEN_REDIS_URL {url!r}: name the primary after the Sentinels "
                         "(redis+sentinel://host:26379,host:26379/<service>)")
    db = int(segments[1]) if kind == "sentinel" and len(segments) > 1 else 0
    nodes = []
    for text in hosts.split(","):
        host, port = _host_port(text.strip(), default_port, url)
        nodes.append(NodeAddress(host, port, tls, unquote(username) or None, unquote(password) or None, db))
    return RedisTopology(kind, url, tuple(nodes), service)


def node_client(node: NodeAddress, **options: Any) -> aioredis.Redis:
    """An asyncio redis-py client of one node (a cluster's, whose slots the caller routes itself)."""
    return aioredis.Redis(host=node.host, port=node.port, username=node.username, password=node.password,
                          ssl=node.tls, **options)


def sync_client(topology: RedisTopology, **options: Any) -> redis.Redis | RedisCluster:
    """A redis-py client of the deployment (for a Sentinel set-up: of the current primary)."""
    seed = topology.nodes[0]
    if topology.kind == "cluster":
        return RedisCluster(startup_nodes=[ClusterNode(n.host, n.port) for n in topology.nodes], ssl=seed.tls,
                            username=seed.username, password=seed.password, **options)
    if topology.kind == "sentinel":
        assert topology.service is not None
        sentinel = Sentinel([(n.host, n.port) for n in topology.nodes], socket_timeout=options.get("socket_timeout"))
        return sentinel.master_for(topology.service, ssl=seed.tls, username=seed.username, password=seed.password,
                                   db=seed.db, **options)
    return redis.Redis.from_url(topology.url, **options)


def async_client(topology: RedisTopology, **options: Any) -> aioredis.Redis:
    """An asyncio redis-py client of one server or of the primary Sentinel names. (On a cluster the
    enforcer reads its run-time state through the node serving that state's slot: ``connect.ControlClient``.)"""
    seed = topology.nodes[0]
    if topology.kind == "cluster":
        raise ValueError("async_client: a cluster's run-time state is read through the node of its slot")
    if topology.kind == "sentinel":
        assert topology.service is not None
        sentinel = AsyncSentinel([(n.host, n.port) for n in topology.nodes],
                                 socket_timeout=options.get("socket_timeout"))
        return sentinel.master_for(topology.service, ssl=seed.tls, username=seed.username, password=seed.password,
                                   db=seed.db, **options)
    return aioredis.Redis.from_url(topology.url, **options)
