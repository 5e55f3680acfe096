"""The embedded default: the whole pipeline on one machine (``ratewarden up``).

Starts, in order and each only if its ``RATEWARDEN_*`` variable does not point at an
existing server: Valkey (one server, or with ``redis="cluster"`` a Redis Cluster of three
primaries with a replica each, or with ``redis="sentinel"`` a primary, a replica and three
Sentinels), the Tansu Kafka broker (with the topics), then a stream worker
(which applies the ClickHouse migrations and, with embedded chDB, also serves the admin
API and console, since only one process may open a chDB directory), the admin API as its
own process when ClickHouse is a server, and the demo API behind the enforcer. Stops them
in reverse order; every child also dies with this process.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from ratewarden.enforcer.topology import parse_redis_url

from .local import (
    KafkaServer,
    LocalServerError,
    ManagedProcess,
    RedisServer,
    StreamWorker,
    create_topics,
    free_port,
    http_ok,
)
from .local_topologies import LocalCluster, LocalSentinels

__all__ = ["Stack", "ApiServer", "AdminServer", "RedisKind", "LocalRedis", "redis_processes", "start_redis",
           "stop_requested"]

DEMO_POLICY = Path(__file__).parent / "examples" / "policy.yaml"
TOPICS = ("ratewarden.requests", "ratewarden.windows", "ratewarden.alerts", "ratewarden.requests.dlq",
          "ratewarden.alerts.undeliverable")


RedisKind = Literal["single", "cluster", "sentinel"]
REDIS_KINDS: tuple[RedisKind, ...] = get_args(RedisKind)
LocalRedis = RedisServer | LocalCluster | LocalSentinels
REDIS_STARTED: dict[str, str] = {  # what start_redis starts, for the progress and the URL table
    "single": "one server",
    "cluster": "Redis Cluster, 3 primaries with 1 replica each",
    "sentinel": "a primary with 1 replica, followed through 3 Sentinels",
}


def start_redis(kind: RedisKind = "single") -> tuple[str, LocalRedis]:
    """Start a local Redis deployment of ``kind``: returns its ``RATEWARDEN_REDIS_URL``
    (``redis://``, ``redis+cluster://`` or ``redis+sentinel://``) and what stops it (``.stop()``).
    If it does not come up, whatever did start is stopped before the error is raised."""
    deployment: LocalRedis
    if kind == "single":
        deployment = RedisServer()
    elif kind == "cluster":
        deployment = LocalCluster(primaries=3, replicas=1)
    elif kind == "sentinel":
        deployment = LocalSentinels(master_name="ratewarden", replicas=1, sentinels=3)
    else:
        raise ValueError(f"unknown Redis kind {kind!r}: use one of {', '.join(REDIS_KINDS)}")
    try:
        deployment.start()
    except BaseException:
        deployment.stop()
        raise
    return deployment.url, deployment


def redis_processes(deployment: LocalRedis) -> list[ManagedProcess]:
    """Every process of ``deployment``, in the order they started."""
    if isinstance(deployment, LocalCluster):
        return list(deployment.nodes)
    if isinstance(deployment, LocalSentinels):
        return [*deployment.servers, *deployment.sentinels]
    return [deployment]


def stop_requested() -> threading.Event:
    """An event set by SIGINT (Ctrl-C) or SIGTERM, for commands that keep the stack up."""
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    return stopped


class ApiServer(ManagedProcess):
    """The demo FastAPI app behind the enforcer, under uvicorn."""

    name = "demo-api"
    ready_timeout_s = 60.0

    def command(self) -> list[str]:
        return [sys.executable, "-m", "uvicorn", "ratewarden.examples.demo_fastapi.app:app", "--host", self.host,
                "--port", str(self.port), "--log-level", "warning", "--no-access-log"]

    def is_ready(self) -> bool:
        return http_ok(f"{self.url}/healthz")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class AdminServer(ApiServer):
    """``ratewarden admin``, when ClickHouse is a server (with chDB the worker serves it)."""

    name = "admin-api"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "ratewarden.cli", "admin", "--host", self.host, "--port", str(self.port)]


def _new_epoch() -> str:
    """A name for this life of the in-memory broker's topics (``RATEWARDEN_KAFKA_TOPIC_EPOCH``):
    each start begins empty, with offsets from 0, while ClickHouse keeps what earlier ones wrote."""
    return f"{int(time.time())}-{secrets.token_hex(3)}"


def _url_kind(url: str) -> str:
    """single, cluster or sentinel: the kind of deployment ``url`` names."""
    try:
        return parse_redis_url(url).kind
    except ValueError:
        return "unrecognised URL"


@dataclass
class Stack:
    """The pipeline's processes. ``start()`` reports progress through ``say``.

    ``redis`` is the kind of Redis started when ``RATEWARDEN_REDIS_URL`` is not set (see
    :func:`start_redis`); its processes are stopped with the rest.
    """

    data_dir: Path = Path("var")
    partitions: int = 4
    redis: RedisKind = "single"
    extra_env: dict[str, str] = field(default_factory=dict)
    say: Callable[[str], None] = print
    processes: list[ManagedProcess] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)

    def _start(self, process: ManagedProcess, what: str) -> ManagedProcess:
        self.say(f"starting {what} ...")
        self.processes.append(process)
        process.start()
        return process

    def start(self) -> Stack:
        """Start every part not given by a ``RATEWARDEN_*`` URL, in dependency order, each ready
        before the next; :class:`LocalServerError` names the part that did not come up."""
        data = self.data_dir.resolve()
        (data / "logs").mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.extra_env}
        env.setdefault("RATEWARDEN_API_KEY_SECRET", secrets.token_urlsafe(24))
        env.setdefault("RATEWARDEN_ADMIN_TOKEN", secrets.token_urlsafe(24))
        env.setdefault("RATEWARDEN_CLICKHOUSE_URL", f"chdb://{data / 'clickhouse'}")
        env.setdefault("RATEWARDEN_DATA_DIR", str(data / "stream"))
        env.setdefault("RATEWARDEN_SPILL_DIR", str(data / "spill"))
        env.setdefault("RATEWARDEN_TOPIC_PARTITIONS", str(self.partitions))
        # a killed worker's place in its consumer groups is given up this soon, and Tansu holds each
        # group join for about half of it: a restarted worker is back in seconds (default 10 s)
        env.setdefault("RATEWARDEN_REBALANCE_TIMEOUT_S", "4")
        env.setdefault("RATEWARDEN_TRUSTED_PROXIES", "127.0.0.1/32")  # the demo's clients say who they are
        env.setdefault("RATEWARDEN_POLICY_FILE", str(DEMO_POLICY))  # the demo API's, and the console shows its tiers
        if self.redis not in REDIS_KINDS:
            raise ValueError(f"unknown Redis kind {self.redis!r}: use one of {', '.join(REDIS_KINDS)}")
        if self.redis != "single" and "RATEWARDEN_REDIS_URL" in env:
            raise ValueError(f"a local {self.redis} Redis was asked for, but RATEWARDEN_REDIS_URL is set "
                             f"({env['RATEWARDEN_REDIS_URL']}): unset it, or use that Redis without --redis")
        self.env = env
        try:
            if "RATEWARDEN_REDIS_URL" not in env:
                what = "Valkey" if self.redis == "single" else f"Valkey ({REDIS_STARTED[self.redis]})"
                self.say(f"starting {what} ...")
                env["RATEWARDEN_REDIS_URL"], deployment = start_redis(self.redis)
                self.processes += redis_processes(deployment)
                redis_kind = f"{self.redis}: {REDIS_STARTED[self.redis]}, started here"
            else:
                redis_kind = f"{_url_kind(env['RATEWARDEN_REDIS_URL'])}, from RATEWARDEN_REDIS_URL"
            if "RATEWARDEN_KAFKA_BOOTSTRAP" not in env:
                broker = KafkaServer(workdir=data / "logs")
                env["RATEWARDEN_KAFKA_BOOTSTRAP"] = self._start(broker, "Kafka broker (Tansu)").url
                env["RATEWARDEN_KAFKA_TOPIC_EPOCH"] = _new_epoch()
            self._create_topics()
            embedded = env["RATEWARDEN_CLICKHOUSE_URL"].startswith("chdb://")
            admin_port = free_port()
            worker_env = {**env, "RATEWARDEN_WORKER_ADMIN_PORT": str(admin_port) if embedded else "0"}
            self._start(StreamWorker(workdir=data / "logs", env=worker_env),
                        "stream worker (migrations" + (", admin API and console)" if embedded else ")"))
            if embedded:
                self.say("waiting for the admin API in the worker ...")
                self._wait(lambda: http_ok(f"http://127.0.0.1:{admin_port}/healthz"), "admin API")
            else:
                self._start(AdminServer(port=admin_port, workdir=data / "logs", env=env), "admin API")
            api = self._start(ApiServer(workdir=data / "logs", env=env), "demo API behind the enforcer")
        except BaseException:
            self.stop()
            raise
        self.urls = {
            "demo API": api.url, "admin API": f"http://127.0.0.1:{admin_port}/docs",
            "console": f"http://127.0.0.1:{admin_port}/console", "redis": env["RATEWARDEN_REDIS_URL"],
            "redis kind": redis_kind, "kafka": env["RATEWARDEN_KAFKA_BOOTSTRAP"],
            "clickhouse": env["RATEWARDEN_CLICKHOUSE_URL"], "logs": str(data / "logs"),
        }
        return self

    def _create_topics(self) -> None:
        create_topics(self.env["RATEWARDEN_KAFKA_BOOTSTRAP"],
                      dict.fromkeys(TOPICS, int(self.env["RATEWARDEN_TOPIC_PARTITIONS"])))

    def restart(self, process: ManagedProcess) -> None:
        """Start ``process`` again after it died, and wait until it is ready. The broker keeps its
        topics in memory, so a restarted broker comes back empty: its topics are created again
        (see :meth:`dependents` for what must follow it)."""
        if isinstance(process, KafkaServer):
            self.say("the Kafka broker (Tansu, in-memory storage) lost everything it held: events the "
                     "stream worker had not consumed yet are gone; it restarts empty and its topics are "
                     "created again")
        process.restart()
        if isinstance(process, KafkaServer):
            try:
                self._create_topics()
            except BaseException:
                process.kill()  # not usable without its topics: the supervisor tries it again
                raise
            # the topic's offsets start again at 0: the workers that follow must not take the usage
            # ClickHouse holds of the last life of the topic for this one's
            self.env["RATEWARDEN_KAFKA_TOPIC_EPOCH"] = epoch = _new_epoch()
            for worker in self.dependents(process):
                if isinstance(worker, StreamWorker):
                    worker.env["RATEWARDEN_KAFKA_TOPIC_EPOCH"] = epoch

    def dependents(self, process: ManagedProcess) -> list[ManagedProcess]:
        """What must be restarted once ``process`` is back: after an empty broker, the stream
        workers (their consumer group and offsets lived in it). The demo API's producer
        reconnects by itself and spills events to disk meanwhile."""
        if isinstance(process, KafkaServer):
            return [p for p in self.processes if isinstance(p, StreamWorker)]
        return []

    @property
    def admin_url(self) -> str:
        """The admin API's base URL (the console is under it)."""
        return self.urls["console"].removesuffix("/console")

    @property
    def admin_token(self) -> str:
        """The admin token the admin API was started with."""
        return self.env["RATEWARDEN_ADMIN_TOKEN"]

    def _wait(self, check: Callable[[], bool], what: str, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            worker = self.processes[-1]
            if not worker.running or time.monotonic() > deadline:
                raise LocalServerError(f"{what} did not come up; log:\n{worker.log_tail(40)}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop every process, newest first."""
        while self.processes:
            process = self.processes.pop()
            self.say(f"stopping {process.name} ...")
            process.stop(timeout_s=20)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
