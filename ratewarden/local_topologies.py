"""Redis Cluster and Sentinel set-ups as local processes, from the same Valkey binary as
:class:`~ratewarden.local.RedisServer`: for tests, benchmarks and ``ratewarden up --redis``.

No ``valkey-cli`` is needed: slots, meetings and replication are arranged with plain
commands (``CLUSTER ADDSLOTSRANGE``, ``CLUSTER MEET``, ``CLUSTER REPLICATE``).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import redis

from .local import LocalServerError, ManagedProcess, RedisServer, _port_answers, find_redis_binary, free_port

__all__ = ["LocalCluster", "LocalSentinels", "SentinelServer"]

SLOTS = 16384


def _wait(what: str, check: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise LocalServerError(f"{what} not reached after {timeout_s:g}s")


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is valid and free too."""
    while True:
        port = free_port()
        if port + 10000 < 65536:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port


def _client(server: ManagedProcess) -> redis.Redis:
    return redis.Redis(host=server.host, port=server.port, socket_timeout=2, decode_responses=True)


class LocalCluster:
    """A Redis Cluster of ``primaries`` primaries with ``replicas`` replicas each, slots split evenly.

    ``url`` is the seed list in the form the enforcer reads: ``redis+cluster://h:p,h:p,...``.
    ``node_timeout_ms`` is how long a silent primary stays a primary before its replica takes over.
    """

    def __init__(self, primaries: int = 3, replicas: int = 1, node_timeout_ms: int = 2000) -> None:
        self.node_timeout_ms = node_timeout_ms
        args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(node_timeout_ms), "--cluster-announce-ip", "127.0.0.1",
                # while one primary fails over, the others keep serving their slots
                "--cluster-require-full-coverage", "no"]
        self.primaries = [RedisServer(free_cluster_port(), args=args) for _ in range(primaries)]
        self.replicas = [RedisServer(free_cluster_port(), args=args) for _ in range(primaries * replicas)]

    @property
    def nodes(self) -> list[RedisServer]:
        return self.primaries + self.replicas

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{node.host}:{node.port}" for node in self.primaries)

    def start(self) -> LocalCluster:
        for node in self.nodes:
            node.start()
        first = _client(self.primaries[0])
        step = SLOTS // len(self.primaries)
        for index, primary in enumerate(self.primaries):
            low, high = index * step, SLOTS - 1 if index == len(self.primaries) - 1 else (index + 1) * step - 1
            _client(primary).execute_command("CLUSTER ADDSLOTSRANGE", low, high)
        for node in self.nodes[1:]:
            first.execute_command("CLUSTER MEET", node.host, node.port)
        _wait("every node knowing every other", lambda: all(
            len(_client(node).execute_command("CLUSTER NODES")) == len(self.nodes)
            for node in self.nodes), 20)
        ids = [_client(primary).execute_command("CLUSTER MYID") for primary in self.primaries]
        for index, replica in enumerate(self.replicas):
            self._replicate(replica, ids[index % len(self.primaries)])
        self.wait_healthy()
        return self

    @staticmethod
    def _replicate(replica: RedisServer, primary_id: str) -> None:
        """Make ``replica`` follow ``primary_id``, once it has heard of that node."""
        _wait("the replica seeing its primary",
              lambda: bool(_client(replica).execute_command("CLUSTER REPLICATE", primary_id)), 20)

    def wait_healthy(self, timeout_s: float = 30) -> None:
        """Until every running node says ``cluster_state:ok`` and every running replica is in sync."""
        def healthy() -> bool:
            for node in self.nodes:
                if not node.running:
                    continue
                client = _client(node)
                if client.execute_command("CLUSTER INFO").get("cluster_state") != "ok":
                    return False
                info = client.info("replication")
                if info["role"] == "slave" and info.get("master_link_status") != "up":
                    return False
            return True

        _wait("a healthy cluster", healthy, timeout_s)

    def primary_of(self, key: str) -> RedisServer:
        """The running node that serves ``key``'s slot now (after any failover)."""
        for node in self.nodes:
            if node.running:
                client = _client(node)
                slot = client.execute_command("CLUSTER KEYSLOT", key)
                for low, high, (_host, port, *_), *_replicas in client.execute_command("CLUSTER SLOTS"):
                    if low <= slot <= high:
                        return next(n for n in self.nodes if n.port == int(port))
        raise LocalServerError("no running node of the cluster answers")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SentinelServer(ManagedProcess):
    """One Sentinel process watching ``master_name`` at ``host:port``."""

    name = "sentinel"

    def __init__(self, master_name: str, master_port: int, quorum: int, down_after_ms: int) -> None:
        super().__init__()
        self.master_name, self.master_port = master_name, master_port
        self.quorum, self.down_after_ms = quorum, down_after_ms

    def command(self) -> list[str]:
        conf = Path(self.workdir) / "sentinel.conf"  # Sentinel rewrites its file: one per process
        conf.write_text(
            f"port {self.port}\nbind {self.host}\nprotected-mode no\ndir {self.workdir}\n"
            f"sentinel monitor {self.master_name} {self.host} {self.master_port} {self.quorum}\n"
            f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}\n"
            f"sentinel failover-timeout {self.master_name} {self.down_after_ms * 4}\n"
        )
        return [find_redis_binary(), str(conf), "--sentinel"]

    def is_ready(self) -> bool:
        return _port_answers(self.host, self.port, b"PING\r\n", lambda reply: reply.startswith(b"+PONG"))

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"


class LocalSentinels:
    """A primary, ``replicas`` replicas and ``sentinels`` Sentinels (quorum: a majority).

    ``url`` is ``redis+sentinel://h:p,h:p,h:p/<master_name>``; ``down_after_ms`` is how long
    the primary may be silent before the Sentinels agree it is down and promote a replica.
    """

    def __init__(self, master_name: str = "ratewarden", replicas: int = 1, sentinels: int = 3,
                 down_after_ms: int = 1000) -> None:
        self.master_name = master_name
        self.primary = RedisServer()
        self.replicas = [RedisServer(args=["--replicaof", self.primary.host, str(self.primary.port)])
                         for _ in range(replicas)]
        self.sentinels = [SentinelServer(master_name, self.primary.port, sentinels // 2 + 1, down_after_ms)
                          for _ in range(sentinels)]

    @property
    def servers(self) -> list[RedisServer]:
        return [self.primary, *self.replicas]

    @property
    def url(self) -> str:
        return ("redis+sentinel://" + ",".join(f"{s.host}:{s.port}" for s in self.sentinels)
                + f"/{self.master_name}")

    def start(self) -> LocalSentinels:
        for server in [*self.servers, *self.sentinels]:
            server.start()
        _wait("the replicas in sync", lambda: all(
            _client(replica).info("replication").get("master_link_status") == "up" for replica in self.replicas), 30)
        others = len(self.sentinels) - 1

        def discovered() -> bool:
            for sentinel in self.sentinels:
                client = _client(sentinel)
                if (len(client.execute_command("SENTINEL SENTINELS", self.master_name)) < others
                        or len(client.execute_command("SENTINEL REPLICAS", self.master_name)) < len(self.replicas)):
                    return False
            return True

        _wait("the Sentinels knowing each other and the replicas", discovered, 30)
        return self

    def master_port(self) -> int:
        """The port of the primary the Sentinels name now."""
        for sentinel in self.sentinels:
            if sentinel.running:
                _host, port = _client(sentinel).execute_command("SENTINEL GET-MASTER-ADDR-BY-NAME", self.master_name)
                return int(port)
        raise LocalServerError("no Sentinel is running")

    def stop(self) -> None:
        for server in [*self.sentinels, *self.servers]:
            server.stop()

    def __enter__(self) -> LocalSentinels:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
