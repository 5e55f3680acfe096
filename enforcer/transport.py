"""Running commands on Redis from the request path: pipelined for asyncio, pooled for threads.

On two cores the Python Redis client, not the server, limits throughput: redis-py
spends ~14 µs packing one 40-argument EVALSHA and its pipeline adds timeouts and
retries per batch. The hot path therefore uses one persistent connection per
process with hiredis packing and parsing (C): every command issued during one
event-loop iteration goes out in one write, replies are matched back in order,
and many batches may be in flight at once. Each request still costs exactly one
EVALSHA. Everything off the hot path uses redis-py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple, cast

import hiredis
import redis
from redis.exceptions import NoScriptError, ReadOnlyError, ResponseError

from .scripts import LuaScript
from .topology import NodeAddress

__all__ = ["AddressSource", "AsyncScriptRunner", "SyncScriptRunner"]

# Where to connect now: asked again at every (re)connection, so a runner follows a Sentinel's switch
AddressSource = Callable[[], Awaitable[NodeAddress]]

# hiredis' stub types the command as a 1-tuple; it takes a tuple of any length
_pack = cast(Callable[[tuple[Any, ...]], bytes], hiredis.pack_command)


class _Waiter:
    __slots__ = ("future", "retry", "sent_at")

    def __init__(self, future: asyncio.Future | None, retry: _ScriptCall | None, sent_at: float) -> None:
        self.future = future
        self.retry = retry  # the script call to resend as EVAL if the server answers NOSCRIPT
        self.sent_at = sent_at


class _ScriptCall(NamedTuple):
    lua: LuaScript
    keys: Sequence[Any]
    args: Sequence[Any]

    def as_eval(self) -> bytes:
        """The call as EVAL, which also loads the script (built only after NOSCRIPT: it is rare)."""
        return _pack(("EVAL", self.lua.source, len(self.keys), *self.keys, *self.args))


class _RespProtocol(asyncio.Protocol):
    """One Redis connection: writes packed commands, resolves waiters in reply order."""

    def __init__(self, on_noscript: Any) -> None:
        self.reader = hiredis.Reader()
        self.waiters: deque[_Waiter] = deque()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._on_noscript = on_noscript

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiters = self.waiters
        while (reply := self.reader.gets()) is not False:
            waiter = waiters.popleft()
            if isinstance(reply, hiredis.ReplyError):
                message = str(reply)
                if message.startswith("NOSCRIPT") and waiter.retry is not None:
                    self._on_noscript(waiter)
                    continue
                if message.startswith("READONLY"):
                    # a demoted primary (failover): drop the connection, so the next call finds the new one
                    reply = ReadOnlyError(message)
                    if self.transport is not None:
                        self.transport.close()
                else:
                    reply = (NoScriptError if message.startswith("NOSCRIPT") else ResponseError)(message)
            future = waiter.future
            if future is not None and not future.done():
                if isinstance(reply, Exception):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        error = ConnectionError(f"Redis connection lost: {exc or 'closed by server'}")
        while self.waiters:
            future = self.waiters.popleft().future
            if future is not None and not future.done():
                future.set_exception(error)


class AsyncScriptRunner:
    """Pipelines commands to Redis on one connection; used by the enforcer's hot path.

    A call not answered within ``timeout_s`` fails with TimeoutError (a late reply is
    dropped). A connection whose oldest call waits longer than ``stale_after_s`` is
    dropped and made again. EVALSHA meeting NOSCRIPT (a restarted or failed-over
    server) is sent again as EVAL, which also reloads the script.
    """

    def __init__(self, address: NodeAddress, timeout_s: float = 0.05, stale_after_s: float = 2.0, *,
                 source: AddressSource | None = None) -> None:
        self.address = address
        self._source = source
        self.timeout_s = timeout_s
        self.stale_after_s = stale_after_s
        self._protocol: _RespProtocol | None = None
        self._connecting: asyncio.Task | None = None
        self._buffer: list[bytes] = []
        self._buffered: list[_Waiter] = []
        self._scheduled = False
        self._sweep: asyncio.TimerHandle | None = None

    # -- queueing ----------------------------------------------------------

    def call(self, lua: LuaScript, keys: Sequence[Any], args: Sequence[Any]) -> asyncio.Future:
        """Queue one script call; the future resolves to its reply or its exception."""
        future = asyncio.get_running_loop().create_future()
        self._queue(_pack(("EVALSHA", lua.sha, len(keys), *keys, *args)),
                    _Waiter(future, _ScriptCall(lua, keys, args), 0.0))
        return future

    def execute(self, *args: Any) -> asyncio.Future:
        """Queue one plain command; the future resolves to its reply or its exception."""
        future = asyncio.get_running_loop().create_future()
        self._queue(_pack(args), _Waiter(future, None, 0.0))
        return future

    def command(self, *args: Any) -> None:
        """Queue a command no one waits for (e.g. releasing a lease; leases also expire)."""
        self._queue(_pack(args), _Waiter(None, None, 0.0))

    def fire(self, lua: LuaScript, keys: Sequence[Any], args: Sequence[Any]) -> None:
        """Queue a script call no one waits for (reloaded and sent again after NOSCRIPT)."""
        self._queue(_pack(("EVALSHA", lua.sha, len(keys), *keys, *args)),
                    _Waiter(None, _ScriptCall(lua, keys, args), 0.0))

    def _queue(self, packed: bytes, waiter: _Waiter) -> None:
        self._buffer.append(packed)
        self._buffered.append(waiter)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _resend_as_eval(self, waiter: _Waiter) -> None:
        assert waiter.retry is not None
        self._queue(waiter.retry.as_eval(), _Waiter(waiter.future, None, 0.0))

    # -- sending -----------------------------------------------------------

    def _flush(self) -> None:
        self._scheduled = False
        if not self._buffer:
            return
        protocol = self._protocol
        if protocol is None or protocol.closed:
            if self._connecting is None:
                self._connecting = asyncio.get_running_loop().create_task(self._connect())
            return  # sent once connected (or failed if the connection cannot be made)
        if protocol.waiters and time.monotonic() - protocol.waiters[0].sent_at > self.stale_after_s:
            assert protocol.transport is not None
            protocol.transport.abort()  # the server hangs: fail what waits, reconnect on next use
            self._protocol = None
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
            return
        data, waiters = b"".join(self._buffer), self._buffered
        self._buffer, self._buffered = [], []
        now = time.monotonic()
        for waiter in waiters:
            waiter.sent_at = now
        protocol.waiters.extend(waiters)
        assert protocol.transport is not None
        protocol.transport.write(data)
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(self.timeout_s, self._expire_late)

    def _expire_late(self) -> None:
        """Fail the calls waiting longer than the budget (a late reply is dropped), then wait for the
        oldest still in time. One timer per connection, not one per batch: a timer per batch held
        every call's future, reply and arguments for the whole budget, so under load they outlived
        the garbage collector's youngest generation and made full collections (tens of ms) frequent."""
        self._sweep = None
        protocol = self._protocol
        if protocol is None:
            return
        deadline = time.monotonic() - self.timeout_s
        error = None
        for waiter in protocol.waiters:  # in the order sent
            if waiter.sent_at > deadline:
                self._sweep = asyncio.get_running_loop().call_later(waiter.sent_at - deadline, self._expire_late)
                return
            future = waiter.future
            if future is not None and not future.done():
                error = error or TimeoutError("Redis did not answer within the budget")
                future.set_exception(error)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self._source is not None:
                self.address = await asyncio.wait_for(self._source(), timeout=max(self.timeout_s, 1.0))
            address = self.address
            protocol_factory = lambda: _RespProtocol(self._resend_as_eval)  # noqa: E731
            connect = (
                loop.create_unix_connection(protocol_factory, address.unix_path)
                if address.unix_path
                else loop.create_connection(
                    protocol_factory, address.host, address.port,
                    ssl=address.ssl_context(),
                )
            )
            transport, protocol = await asyncio.wait_for(connect, timeout=max(self.timeout_s, 1.0))
            setup: list[tuple[str | int, ...]] = []
            if address.password:
                setup.append(("AUTH", address.username, address.password) if address.username
                             else ("AUTH", address.password))
            if address.db:
                setup.append(("SELECT", address.db))
            for args in setup:
                future = loop.create_future()
                protocol.waiters.append(_Waiter(future, None, time.monotonic()))
                transport.write(_pack(args))
                await asyncio.wait_for(future, timeout=1.0)
            self._protocol = protocol
        except (TimeoutError, OSError, redis.RedisError) as exc:
            error = ConnectionError(f"cannot connect to Redis: {type(exc).__name__}: {exc}")
            waiters, self._buffer, self._buffered = self._buffered, [], []
            for waiter in waiters:
                if waiter.future is not None and not waiter.future.done():
                    waiter.future.set_exception(error)
        finally:
            self._connecting = None
        if self._buffer:
            self._flush()

    async def aclose(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        if self._connecting is not None:
            self._connecting.cancel()
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None


class SyncScriptRunner:
    """One EVALSHA per call from threads (WSGI), packed by hiredis.

    Each thread keeps a connection of its own from the client's pool (WSGI threads are few and
    long-lived), so a call takes no pool lock and no health poll; a connection that fails is
    dropped and the next call takes a new one (through Sentinel: from the primary named now).
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._pool = client.connection_pool
        self._local = threading.local()

    def _round_trip(self, packed: bytes) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._pool.get_connection()
        try:
            connection.send_packed_command([packed], check_health=False)
            return connection.read_response()
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            connection.disconnect()
            self._pool.release(connection)
            self._local.connection = None
            raise

    def call(self, lua: LuaScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        tail = (len(keys), *keys, *args)
        try:
            return self._round_trip(_pack(("EVALSHA", lua.sha, *tail)))
        except NoScriptError:
            return self._round_trip(_pack(("EVAL", lua.source, *tail)))

    def command(self, *args: Any) -> None:
        try:
            self._round_trip(_pack(args))
        except (redis.RedisError, OSError):
            pass  # leases expire by themselves
