"""What an enforcer keeps in memory of run-time state: overrides and API keys,
kept fresh by the change feed (see ``enforcer.changes``)."""

from __future__ import annotations

import asyncio
import time

import redis
import redis.asyncio as aioredis
import structlog

from .apikeys import KEYS_HASH, ApiKeyRecord, decode_record, hash_api_key
from .changes import CHANGES_CHANNEL, POLL_INTERVAL_S, VERSION_KEY
from .overrides import OVERRIDES_HASH, Override
from .transport import AsyncScriptRunner

__all__ = ["LiveState"]

log = structlog.get_logger("ratewarden.enforcer")

_KEY_TTL_S, _UNKNOWN_KEY_TTL_S, _MAX_CACHED_KEYS = 60.0, 10.0, 100_000


class LiveState:
    """Overrides and API key records for one enforcer, updated within a second of a change."""

    def __init__(self, client: aioredis.Redis, runner: AsyncScriptRunner, api_key_secret: bytes | None) -> None:
        self.client = client
        self.runner = runner
        self.secret = api_key_secret
        self.overrides: dict[str, Override] = {}
        self.generation = 0  # bumped on every applied change
        self._keys: dict[str, tuple[ApiKeyRecord | None, float]] = {}
        self._version: bytes | None = None
        self._task: asyncio.Task | None = None
        self._closing = False

    def override(self, client_id: str) -> Override | None:
        found = self.overrides.get(client_id)
        if found is not None and not found.active():
            return None
        return found

    async def api_key(self, api_key: str) -> ApiKeyRecord | None:
        """The live record of ``api_key``, or None if unknown or revoked (cached; one HGET on a miss)."""
        if self.secret is None:
            return None
        digest = hash_api_key(self.secret, api_key)
        cached = self._keys.get(digest)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        raw = await self.runner.execute("HGET", KEYS_HASH, digest)
        record = decode_record(raw) if raw else None
        if record is not None and record.revoked_at is not None:
            record = None
        if len(self._keys) >= _MAX_CACHED_KEYS:
            self._keys.clear()
        self._keys[digest] = (record, now + (_KEY_TTL_S if record else _UNKNOWN_KEY_TTL_S))
        return record

    async def start(self) -> None:
        """Follow changes from now on, and load the current state (raises if Redis is down)."""
        self._task = asyncio.get_running_loop().create_task(self._follow())
        await self.reload()

    async def aclose(self) -> None:
        # a flag as well as cancel(): redis-py's read timeouts can swallow a cancellation
        self._closing = True
        if self._task:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=2 * POLL_INTERVAL_S)
            self._task = None

    async def reload(self) -> None:
        """Load every override and forget cached keys."""
        pipe = self.client.pipeline(transaction=True)
        pipe.get(VERSION_KEY)
        pipe.hgetall(OVERRIDES_HASH)
        version, raw = await pipe.execute()
        overrides = {}
        for client_id, value in raw.items():
            try:
                overrides[client_id.decode()] = Override.model_validate_json(value)
            except ValueError:
                log.warning("override_unreadable", client_id=client_id.decode(errors="replace"))
        self.overrides = overrides
        self._keys.clear()
        self._version = version
        self.generation += 1

    async def _apply(self, message: bytes) -> None:
        kind, _, subject = message.decode(errors="replace").partition(" ")
        if kind == "override":
            raw = await self.client.hget(OVERRIDES_HASH, subject)
            if raw is None:
                self.overrides.pop(subject, None)
            else:
                self.overrides[subject] = Override.model_validate_json(raw)
        elif kind == "apikey":
            self._keys.pop(subject, None)
        self.generation += 1

    async def _follow(self) -> None:
        while not self._closing:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANGES_CHANNEL)
                await self.reload()  # anything missed while not subscribed
                await self._listen(pubsub)
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError, ValueError) as exc:
                if self._closing:
                    return
                log.warning("change_feed_interrupted", error=type(exc).__name__)
                await asyncio.sleep(POLL_INTERVAL_S)
            finally:
                try:
                    await pubsub.aclose()
                except (redis.RedisError, OSError):
                    pass

    async def _listen(self, pubsub: aioredis.client.PubSub) -> None:
        next_poll = time.monotonic() + POLL_INTERVAL_S
        heard = False
        while not self._closing:
            message = await pubsub.get_message(timeout=POLL_INTERVAL_S)
            if message is not None and message["type"] == "message":
                await self._apply(message["data"])
                heard = True
            if time.monotonic() >= next_poll:
                version = await self.client.get(VERSION_KEY)
                if version != self._version:
                    if not heard:
                        await self.reload()  # changes without messages: the feed lost some
                    self._version = version
                heard = False
                next_poll = time.monotonic() + POLL_INTERVAL_S
