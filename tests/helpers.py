"""Helpers shared by tests."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import redis

from ratewarden.enforcer import Enforcer, EnforcerSettings, policy_from_mapping


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
