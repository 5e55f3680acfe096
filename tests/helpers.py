"""Helpers shared by tests."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from ratewarden.enforcer import Enforcer, EnforcerSettings, policy_from_mapping
from ratewarden.local import RedisServer


def make_enforcer(redis_url: str, policy: dict[str, Any], **settings: Any) -> Enforcer:
    """An enforcer on ``policy`` (a mapping as in a policy file)."""
    settings.setdefault("redis_budget_ms", 2000)  # tests on a busy machine must not fall back by accident
    return Enforcer(policy_from_mapping(policy), EnforcerSettings(redis_url=redis_url, **settings))


def one_rule_policy(algorithm: str, limit: int, period: str, **extra: Any) -> dict[str, Any]:
    rule = {"name": "r", "algorithm": algorithm, "limit": limit, "period": period, "scope": ["ip"], **extra}
    return {"tiers": {"anonymous": {"rules": [rule]}, "free": {}}}


def command_counts(client: redis.Redis) -> dict[str, int]:
    """Calls per command since the last CONFIG RESETSTAT, from INFO commandstats."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def wait_until(check: Callable[[], bool], within_s: float, what: str) -> float:
    """Seconds until ``check()`` holds; fails naming ``what`` if it does not within ``within_s``."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < within_s, f"{what}: not within {within_s} s"
        time.sleep(0.01)
    return time.monotonic() - start


def offset_to(enforcer: Enforcer, when: dt.datetime) -> None:
    """Move the enforcer's script clock so that Redis' 'now' reads ``when`` (UTC)."""
    enforcer.clock_offset_s = when.timestamp() - time.time()


def hammer_one_key(redis_url: str, policy: dict[str, Any], offset_s: float, callers: int, attempts: int,
                   go: Any, ready: Any, results: Any) -> None:
    """In a child process: ``callers`` concurrent tasks each try ``attempts`` requests
    of one client once ``go`` is set; puts how many were admitted on ``results``."""
    hammer_request(redis_url, policy, offset_s, callers, attempts, "192.0.2.99", "GET /hot", go, ready, results)


def hammer_request(redis_url: str, policy: dict[str, Any], offset_s: float, callers: int, attempts: int,
                   ip: str, route: str, go: Any, ready: Any, results: Any) -> None:
    """:func:`hammer_one_key` for the client at ``ip`` on ``route``."""
    import asyncio

    async def run() -> int:
        enforcer = make_enforcer(redis_url, policy)
        await enforcer.start()
        enforcer.clock_offset_s = offset_s
        identity = await enforcer.identify(ip=ip)
        ready.release()
        await asyncio.get_running_loop().run_in_executor(None, go.wait)

        async def caller() -> int:
            admitted = 0
            for _ in range(attempts):
                admitted += (await enforcer.decide(identity, route)).allowed
            return admitted

        total = sum(await asyncio.gather(*(caller() for _ in range(callers))))
        await enforcer.aclose()
        return total

    try:
        results.put(asyncio.run(run()))
    except BaseException as exc:  # the parent reports it
        results.put(repr(exc))
        raise


def hammer_request_sync(redis_url: str, policy: dict[str, Any], offset_s: float, threads: int, attempts: int,
                        ip: str, route: str, go: Any, ready: Any, results: Any) -> None:
    """:func:`hammer_request` through the WSGI enforcer (``SyncEnforcer``) from ``threads`` threads."""
    from concurrent.futures import ThreadPoolExecutor

    from ratewarden.enforcer import SyncEnforcer

    try:
        enforcer = SyncEnforcer(policy_from_mapping(policy), EnforcerSettings(redis_url=redis_url,
                                                                              redis_budget_ms=2000))
        enforcer.start()
        enforcer.clock_offset_s = offset_s
        identity = enforcer.identify(ip=ip)
        ready.release()
        go.wait()

        def caller() -> int:
            return sum(enforcer.decide(identity, route).allowed for _ in range(attempts))

        with ThreadPoolExecutor(threads) as pool:
            total = sum(pool.map(lambda _: caller(), range(threads)))
        enforcer.close()
        results.put(total)
    except BaseException as exc:
        results.put(repr(exc))
        raise


def hammer_django(redis_url: str, path: str, threads: int, attempts: int, overrides: dict[str, Any] | None,
                  go: Any, ready: Any, results: Any) -> None:
    """In a child process: Django with the test URLs; ``threads`` threads each GET ``path``
    ``attempts`` times as one client once ``go`` is set; puts the number of 200s on ``results``."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    os.environ["DJANGO_SETTINGS_MODULE"] = "drfdemo.settings"
    os.environ["RATEWARDEN_REDIS_URL"] = redis_url
    try:
        import django
        from django.conf import settings

        django.setup()
        settings.ROOT_URLCONF = "tests.django_urls"
        for name, value in (overrides or {}).items():
            setattr(settings, name, value)
        from django.test import Client

        def caller() -> int:
            client = Client(REMOTE_ADDR="192.0.2.99")
            return sum(client.get(path).status_code == 200 for _ in range(attempts))

        Client(REMOTE_ADDR="192.0.2.1").get("/healthz")  # warm up imports and connections
        ready.release()
        go.wait()
        with ThreadPoolExecutor(threads) as pool:
            results.put(sum(pool.map(lambda _: caller(), range(threads))))
    except BaseException as exc:
        results.put(repr(exc))
        raise


def run_processes(target: Any, args: tuple[Any, ...], processes: int) -> list[Any]:
    """Start ``processes`` spawned children of ``target(*args, go, ready, results)``, release
    them together, and return what each put on ``results``."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    go, ready, results = context.Event(), context.Semaphore(0), context.Queue()
    workers = [context.Process(target=target, args=(*args, go, ready, results)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    try:
        for _ in range(processes):
            if not ready.acquire(timeout=90):
                raise RuntimeError("a worker process did not start")
        go.set()
        return [results.get(timeout=180) for _ in range(processes)]
    finally:
        for worker in workers:
            worker.join(10)
            if worker.is_alive():
                worker.kill()


def read_topic(bootstrap: str, topic: str, idle_s: float = 3.0, timeout_s: float = 60.0,
               expect: int | None = None, linger_s: float = 0.0) -> list[Any]:
    """Every record on ``topic`` (a plain aiokafka consumer): reads until ``expect`` records
    (and ``linger_s`` more, so that too many shows), or without ``expect`` until ``idle_s``
    passes without one, and never past ``timeout_s``."""
    import asyncio
    import time as _time

    from aiokafka import AIOKafkaConsumer

    async def run() -> list[Any]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                    group_id=None, enable_auto_commit=False)
        await consumer.start()
        records: list[Any] = []
        deadline = _time.monotonic() + timeout_s
        quiet_since = _time.monotonic()
        enough_at = None
        try:
            while _time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=200)
                fresh = [r for rs in batch.values() for r in rs]
                records += fresh
                now = _time.monotonic()
                quiet_since = now if fresh else quiet_since
                if expect is not None and len(records) >= expect:
                    enough_at = enough_at or now
                    if now - enough_at >= linger_s:
                        break
                if expect is None and records and now - quiet_since > idle_s:
                    break
        finally:
            await consumer.stop()
        return records

    return asyncio.run(run())


def consume_events(bootstrap: str, topic: str, expect: int, timeout_s: float = 30.0) -> list[Any]:
    """Every event on ``topic``, waiting up to ``timeout_s`` for ``expect`` (and a second more)."""
    from ratewarden.enforcer.events import decode_event

    return [decode_event(r.value) for r in read_topic(bootstrap, topic, timeout_s=timeout_s, expect=expect,
                                                      linger_s=1.0)]


@dataclass
class Load:
    """Steady HTTP requests, ``rate_per_s`` from each client (one by default; each of ``clients``
    names the extra headers it sends, e.g. its forwarded address), recording every status and latency."""

    base_url: str
    rate_per_s: float = 40.0
    headers: dict[str, str] = field(default_factory=dict)
    clients: list[dict[str, str]] = field(default_factory=lambda: [{}])
    statuses: Counter[Any] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Load:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        return self

    async def _run(self) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10, headers=self.headers) as http:
            await asyncio.gather(*(self._client(http, headers) for headers in self.clients))

    async def _client(self, http: httpx.AsyncClient, headers: dict[str, str]) -> None:
        next_at = time.monotonic()
        i = 0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                response = await http.get(f"/v1/items/{i % 50 + 1}", headers=headers)
                self.statuses[response.status_code] += 1
            except httpx.HTTPError as exc:
                self.statuses[type(exc).__name__] += 1
            self.latencies.append(time.monotonic() - started)
            i += 1
            next_at += 1 / self.rate_per_s
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    def stop(self) -> int:
        """Stop, and return the number of requests answered (or failed)."""
        self._stop.set()
        assert self._thread is not None
        self._thread.join(30)
        return sum(self.statuses.values())


def process_alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class PasswordRedis(RedisServer):
    """Valkey that wants ``password`` (it answers PING with NOAUTH: up all the same)."""

    def __init__(self, password: str) -> None:
        super().__init__()
        self.password = password

    def command(self) -> list[str]:
        return [*super().command(), "--requirepass", self.password]

    def is_ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith((b"-NOAUTH", b"+PONG"))
        except OSError:
            return False

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{self.host}:{self.port}/0"
