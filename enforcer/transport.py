"""Running script calls on Redis: batched for asyncio, pooled for threads.

On two cores the Python Redis client, not the server, limits throughput. The
async runner therefore coalesces every script call made during one event-loop
iteration into one pipeline (each request still costs exactly one EVALSHA;
they just share a network write). Replies are matched back in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from .scripts import LuaScript

__all__ = ["AsyncScriptRunner", "SyncScriptRunner"]

Call = tuple[LuaScript, Sequence[Any], Sequence[Any], asyncio.Future]


class AsyncScriptRunner:
    """Coalesces concurrent EVALSHA calls into pipelines on a shared connection pool.

    A call not answered within ``timeout_s`` fails with TimeoutError (its reply,
    if one comes later, is dropped).
    """

    def __init__(self, client: aioredis.Redis, timeout_s: float = 0.05, max_batch: int = 512) -> None:
        self.client = client
        self.timeout_s = timeout_s
        self.max_batch = max_batch
        self._pending: list[Call] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task] = set()

    def call(self, lua: LuaScript, keys: Sequence[Any], args: Sequence[Any]) -> asyncio.Future:
        """Queue one script call; the future resolves to its reply or its exception."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((lua, keys, args, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        elif len(self._pending) >= self.max_batch:
            self._flush()
        return future

    def command(self, *args: Any) -> None:
        """Send a plain command with no one waiting for it (e.g. releasing a lease)."""
        task = asyncio.get_running_loop().create_task(self._fire_and_forget(args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fire_and_forget(self, args: tuple[Any, ...]) -> None:
        try:
            await self.client.execute_command(*args)
        except (redis.RedisError, OSError):
            pass  # leases expire by themselves

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        if batch:
            loop = asyncio.get_running_loop()
            expiry = loop.call_later(self.timeout_s, _expire, batch)
            task = loop.create_task(self._run(batch, expiry))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[Call], expiry: asyncio.TimerHandle) -> None:
        try:
            await self._run_batch(batch)
        finally:
            expiry.cancel()

    async def _run_batch(self, batch: list[Call]) -> None:
        try:
            replies = await self._execute(batch)
        except BaseException as exc:  # connection lost, timeout, cancelled: every caller learns it
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else ConnectionError(str(exc)))
            return
        retry = [(call, i) for i, call in enumerate(batch) if isinstance(replies[i], NoScriptError)]
        if retry:  # the server lost its scripts (restart, failover): load and run those again
            for lua in {call[0] for call, _ in retry}:
                await self.client.script_load(lua.source)
            again = await self._execute([call for call, _ in retry])
            for (call, i), reply in zip(retry, again):
                replies[i] = reply
        for (*_, future), reply in zip(batch, replies):
            if not future.done():
                if isinstance(reply, Exception):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)

    async def _execute(self, batch: list[Call]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for lua, keys, args, _ in batch:
            pipe.execute_command("EVALSHA", lua.sha, len(keys), *keys, *args)
        return await pipe.execute(raise_on_error=False)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _expire(batch: list[Call]) -> None:
    for *_, future in batch:
        if not future.done():
            future.set_exception(TimeoutError("Redis did not answer within the budget"))


class SyncScriptRunner:
    """One EVALSHA per call on a thread-safe connection pool (WSGI, threads)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def call(self, lua: LuaScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            return self.client.execute_command("EVALSHA", lua.sha, len(keys), *keys, *args)
        except NoScriptError:
            self.client.script_load(lua.source)
            return self.client.execute_command("EVALSHA", lua.sha, len(keys), *keys, *args)

    def command(self, *args: Any) -> None:
        try:
            self.client.execute_command(*args)
        except (redis.RedisError, OSError):
            pass
