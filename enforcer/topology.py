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

import dataclasses
import ssl
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import parse_url
from redis.sentinel import Sentinel

__all__ = ["NodeAddress", "RedisTopology", "async_client", "node_client", "parse_redis_url", "sync_client"]

Kind = Literal["single", "cluster", "sentinel"]
_SCHEMES: dict[str, tuple[Kind, bool]] = {
    "redis": ("single", False), "rediss": ("single", True), "unix": ("single", False),
    "redis+cluster": ("cluster", False), "rediss+cluster": ("cluster", True),
    "redis+sentinel": ("sentinel", False), "rediss+sentinel": ("sentinel", True),
}
_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
# the TLS options of redis-py's URLs that the request path's own connection applies as redis-py does
_TLS_OPTIONS = frozenset({"ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile",
                          "ssl_password", "ssl_check_hostname", "ssl_min_version", "ssl_ciphers"})
# connection options only the redis-py clients off the request path use (it has its own budget)
# (timeouts and retries are not among them: RATEWARDEN_REDIS_BUDGET_MS sets those)
_CLIENT_OPTIONS = frozenset({"db", "client_name", "socket_keepalive", "health_check_interval", "max_connections"})


@dataclass(frozen=True, slots=True)
class NodeAddress:
    """One server to connect to, with what to say once connected."""

    host: str = "127.0.0.1"
    port: int = 6379
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    db: int = 0
    unix_path: str | None = None
    tls_options: tuple[tuple[str, str], ...] = ()  # redis-py's ssl_* URL options, as written

    def __str__(self) -> str:
        return self.unix_path or f"{self.host}:{self.port}"

    def redis_kwargs(self) -> dict[str, Any]:
        """The TLS keyword arguments of a redis-py client of this node (ssl=True and the URL's options)."""
        if not self.tls:
            return {}
        options: dict[str, Any] = dict(self.tls_options)
        if "ssl_check_hostname" in options:
            options["ssl_check_hostname"] = _flag(options["ssl_check_hostname"])
        if "ssl_min_version" in options:
            options["ssl_min_version"] = ssl.TLSVersion(int(options["ssl_min_version"]))
        return {"ssl": True, **options}

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of the request path's connection, built as redis-py builds its own."""
        if not self.tls:
            return None
        options = dict(self.tls_options)
        verify = _CERT_REQS[options.get("ssl_cert_reqs", "required")]
        context = ssl.create_default_context()
        # as redis-py: no certificate check means no host name check
        context.check_hostname = verify != ssl.CERT_NONE and _flag(options.get("ssl_check_hostname", "true"))
        context.verify_mode = verify
        if "ssl_certfile" in options or "ssl_keyfile" in options:
            context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"), options.get("ssl_password"))
        if "ssl_ca_certs" in options or "ssl_ca_path" in options:
            context.load_verify_locations(cafile=options.get("ssl_ca_certs"), capath=options.get("ssl_ca_path"))
        if "ssl_min_version" in options:
            context.minimum_version = ssl.TLSVersion(int(options["ssl_min_version"]))
        if "ssl_ciphers" in options:
            context.set_ciphers(options["ssl_ciphers"])
        return context


@dataclass(frozen=True, slots=True)
class RedisTopology:
    """A parsed ``RATEWARDEN_REDIS_URL``: the kind of deployment and how to reach it."""

    kind: Kind
    url: str = field(repr=False)  # the single-server URL as given (redis-py reads it itself)
    nodes: tuple[NodeAddress, ...]  # the server; the cluster's seeds; the Sentinels
    service: str | None = None  # Sentinel: the primary's name

    def node(self, host: str, port: int) -> NodeAddress:
        """A node of this deployment at ``host:port``, with its credentials, TLS and database."""
        return dataclasses.replace(self.nodes[0], host=host, port=port, unix_path=None)

    def describe(self) -> str:
        """Where this points, for logs and errors (no credentials): ``127.0.0.1:6379 db 0``,
        ``cluster a:7000,b:7001``, ``sentinel primary-a via s1:26379,s2:26379 db 2``."""
        hosts = ",".join(str(node) for node in self.nodes)
        db = f" db {self.nodes[0].db}"
        if self.kind == "cluster":
            return f"cluster {hosts}"
        if self.kind == "sentinel":
            return f"sentinel {self.service} via {hosts}{db}"
        return hosts + db


def _flag(value: str) -> bool:
    """A boolean URL option as redis-py reads one (``0``, ``false``, ``no``, ``f``, ``n``, ``off``: false)."""
    return value.strip().lower() not in ("", "0", "false", "f", "n", "no", "off")


def _redacted(url: str) -> str:
    """``url`` without its password, for error messages."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hosts = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url if at == "" else f"{scheme}{sep}***@{hosts}"
    return f"{scheme}{sep}{userinfo.partition(':')[0]}:***@{hosts}"


def _host_port(text: str, default_port: int, url: str) -> tuple[str, int]:
    if text.startswith("["):  # [IPv6]:port
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = text.partition(":")
    if not host:
        raise ValueError(f"RATEWARDEN_REDIS_URL {_redacted(url)!r}: a host is missing")
    try:
        return host, int(port) if port else default_port
    except ValueError:
        raise ValueError(f"RATEWARDEN_REDIS_URL {_redacted(url)!r}: port {port!r} is not a number") from None


def _tls_options(query: str, tls: bool, url: str) -> tuple[tuple[str, str], ...]:
    """The URL's ``ssl_*`` options, checked; any other option must be one redis-py's clients take."""
    options: list[tuple[str, str]] = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in _TLS_OPTIONS:
            if not tls:
                raise ValueError(f"RATEWARDEN_REDIS_URL {_redacted(url)!r}: {name} needs TLS (rediss://)")
            options.append((name, value))
        elif name not in _CLIENT_OPTIONS:
            known = ", ".join(sorted(_CLIENT_OPTIONS | _TLS_OPTIONS))
            raise ValueError(f"RATEWARDEN_REDIS_URL {_redacted(url)!r}: unknown option {name!r}; known: {known}")
    found = dict(options)
    if found.get("ssl_cert_reqs", "required") not in _CERT_REQS:
        raise ValueError(f"RATEWARDEN_REDIS_URL {_redacted(url)!r}: ssl_cert_reqs must be none, optional or "
                         f"required, not {found['ssl_cert_reqs']!r}")
    if "ssl_min_version" in found:
        try:
            ssl.TLSVersion(int(found["ssl_min_version"]))
        except ValueError:
            raise ValueError(f"RATEWARDEN_REDIS_URL {_redacted(url)!r}: ssl_min_version must be a number of "
                             f"ssl.TLSVersion (e.g. {int(ssl.TLSVersion.TLSv1_2)}), not "
                             f"{found['ssl_min_version']!r}") from None
    if "ssl_keyfile" in found and "ssl_certfile" not in found:
        raise ValueError(f"RATEWARDEN_REDIS_URL {_redacted(url)!r}: ssl_keyfile needs ssl_certfile")
    return tuple(options)


def _server(url: str, tls: bool) -> NodeAddress:
    """One server's address by redis-py's own rules (``parse_url``): credentials, host and port, or a
    socket path; the database from ``?db=``, else from the path; with the URL's TLS options."""
    tls_options = _tls_options(urlsplit(url).query, tls, url)
    try:
        options = parse_url(url)
    except ValueError as exc:
        raise ValueError(f"RATEWARDEN_REDIS_URL {_redacted(url)!r}: {exc}") from None
    path = unquote(urlsplit(url).path)
    if "db" not in options and not url.startswith("unix") and path.strip("/"):
        # redis-py would quietly use database 0 here: a typo must not move every counter
        raise ValueError(f"RATEWARDEN_REDIS_URL {_redacted(url)!r}: the path names database "
                         f"{path.strip('/')!r}, which is not a number")
    if url.startswith("unix") and not options.get("path"):
        raise ValueError(f"RATEWARDEN_REDIS_URL {_redacted(url)!r}: a socket path is missing (unix:///path/to.sock)")
    db = options.get("db", 0)
    if db < 0:
        raise ValueError(f"RATEWARDEN_REDIS_URL {_redacted(url)!r}: database {db} is negative")
    return NodeAddress(options.get("host", "127.0.0.1"), options.get("port", 6379), tls, options.get("username"),
                       options.get("password"), db, options.get("path"), tls_options)


def parse_redis_url(url: str) -> RedisTopology:
    """The deployment ``url`` names; a ``ValueError`` naming the setting and the problem if malformed.

    One server's URL is read by redis-py's ``parse_url`` (what its clients off the request path do
    with the same URL), so both sides reach the same server, database and credentials. The cluster
    and Sentinel forms share its rules for credentials, ``?db=`` and the TLS options.
    """
    scheme = url.partition("://")[0].lower()
    if scheme not in _SCHEMES or "://" not in url:
        raise ValueError(f"RATEWARDEN_REDIS_URL {_redacted(url)!r}: use redis://, rediss://, unix://, "
                         "redis+cluster://host:port,... or redis+sentinel://host:port,.../service")
    kind, tls = _SCHEMES[scheme]
    if kind == "single":
        return RedisTopology("single", url, (_server(url, tls),))
    rest, _, query = url.partition("://")[2].partition("?")
    userinfo, at, hosts = rest.rpartition("@")
    hosts, _, path = hosts.partition("/")
    segments = [segment for segment in path.split("/") if segment]
    service = unquote(segments[0]) if kind == "sentinel" and segments else None
    if kind == "sentinel" and not service:
        raise ValueError(f"RATEWARDEN_REDIS_URL {_redacted(url)!r}: name the primary after the Sentinels "
                         "(redis+sentinel://host:26379,host:26379/<service>)")
    db_path = segments[1:] if kind == "sentinel" else segments
    if len(db_path) > 1:
        raise ValueError(f"RATEWARDEN_REDIS_URL {_redacted(url)!r}: unexpected path {path!r}")
    default_port = 26379 if kind == "sentinel" else 6379
    addresses = [_host_port(text.strip(), default_port, url) for text in hosts.split(",")]
    # the first host stands for all: one server URL carries the credentials, database and options
    seed = _server(f"{'rediss' if tls else 'redis'}://{userinfo}{at}{hosts.split(',')[0].strip()}/"
                   f"{''.join(db_path)}{'?' if query else ''}{query}", tls)
    if kind == "cluster" and seed.db:
        raise ValueError(f"RATEWARDEN_REDIS_URL {_redacted(url)!r}: a Redis Cluster has database 0 only")
    nodes = tuple(dataclasses.replace(seed, host=host, port=port) for host, port in addresses)
    return RedisTopology(kind, url, nodes, service)


def node_client(node: NodeAddress, **options: Any) -> aioredis.Redis:
    """An asyncio redis-py client of one node (a cluster's, whose slots the caller routes itself)."""
    return aioredis.Redis(host=node.host, port=node.port, username=node.username, password=node.password,
                          db=node.db, **node.redis_kwargs(), **options)


def sync_client(topology: RedisTopology, **options: Any) -> redis.Redis | RedisCluster:
    """A redis-py client of the deployment (for a Sentinel set-up: of the current primary)."""
    seed = topology.nodes[0]
    if topology.kind == "cluster":
        return RedisCluster(startup_nodes=[ClusterNode(n.host, n.port) for n in topology.nodes],
                            username=seed.username, password=seed.password, **seed.redis_kwargs(), **options)
    if topology.kind == "sentinel":
        assert topology.service is not None
        sentinel = Sentinel([(n.host, n.port) for n in topology.nodes], socket_timeout=options.get("socket_timeout"))
        return sentinel.master_for(topology.service, username=seed.username, password=seed.password, db=seed.db,
                                   **seed.redis_kwargs(), **options)
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
        return sentinel.master_for(topology.service, username=seed.username, password=seed.password, db=seed.db,
                                   **seed.redis_kwargs(), **options)
    return aioredis.Redis.from_url(topology.url, **options)
