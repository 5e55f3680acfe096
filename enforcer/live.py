"""What an enforcer keeps in memory of run-time state: overrides, run-time tiers and API keys,
kept fresh by the change feed (see ``ratewarden.enforcer.changes``).

``LiveCache`` holds the state and the rules for changing it; ``LiveState``
(asyncio) and ``SyncLiveState`` (a daemon thread, for WSGI) do the I/O.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, TypeVar

import redis
import redis.asyncio as aioredis
from redis.cluster import RedisCluster

from .apikeys import KEYS_HASH, ApiKeyRecord, decode_record, hash_api_key
from .changes import CHANGES_CHANNEL, POLL_INTERVAL_S, VERSION_KEY, as_bytes
from .logs import get_logger
from .outage import OutageLog
from .overrides import OVERRIDES_HASH, Override
from .policy import Tier
from .tiers import TIERS_HASH
from .transport import AsyncScriptRunner

if TYPE_CHECKING:
    from .cluster import AsyncClusterRunner
    from .connect import ControlClient

__all__ = ["LiveCache", "LiveState", "SyncLiveState"]

log = get_logger("ratewarden.enforcer")

_KEY_TTL_S, _UNKNOWN_KEY_TTL_S, _MAX_CACHED_KEYS = 60.0, 10.0, 100_000
_FEED_ERRORS = (redis.RedisError, OSError, ValueError)
REDIS_SETTING = "RATEWARDEN_REDIS_URL"
_Entry = TypeVar("_Entry", Override, Tier)


def _readable(raw: dict[bytes, bytes], model: type[Override] | type[Tier], what: str) -> dict:
    """Every entry of a Redis hash that parses as ``model``; the others are logged and skipped."""
    parsed = {}
    for name, value in raw.items():
        try:
            parsed[name.decode()] = model.model_validate_json(value)
        except ValueError:
            log.warning(f"{what}_unreadable", name=name.decode(errors="replace"))
    return parsed


def _feed_outage(server: str) -> OutageLog:
    """How the change feed logs losing ``server`` (see :class:`OutageLog`), retrying from every poll
    interval to every 2 s."""
    return OutageLog(log, "change_feed", server=server, setting=REDIS_SETTING, min_retry_s=POLL_INTERVAL_S)


def _put(entries: dict[str, _Entry], name: str, model: type[_Entry], raw: bytes | None) -> None:
    """Set ``name`` to ``raw`` parsed as ``model``, or remove it if ``raw`` is None."""
    if raw is None:
        entries.pop(name, None)
    else:
        entries[name] = model.model_validate_json(raw)


class LiveCache:
    """Overrides and API key records of one enforcer, and how changes apply to them."""

    def __init__(self, api_key_secret: bytes | None) -> None:
        self.secret = api_key_secret
        self.overrides: dict[str, Override] = {}
        self.tiers: dict[str, Tier] = {}  # set at run time, over the policy file's
        self.generation = 0  # bumped on every applied change
        self.tiers_generation = 0  # bumped when run-time tiers change
        self._keys: dict[str, tuple[ApiKeyRecord | None, float]] = {}
        self._digests: dict[str, str] = {}
        self._version: bytes | None = None
        self._closing = False

    def override(self, client_id: str) -> Override | None:
        found = self.overrides.get(client_id)
        if found is not None and not found.active():
            return None
        return found

    def known(self, api_key: str) -> tuple[str | None, ApiKeyRecord | None]:
        """(None, record) when the cache answers (or keys are off); (digest, None) when Redis must."""
        if self.secret is None:
            return None, None
        # the keyed hash costs more than the rest of identifying a caller: remember it per key seen
        # (the raw keys already pass through this process's memory with every request)
        digest = self._digests.get(api_key)
        if digest is None:
            if len(self._digests) >= _MAX_CACHED_KEYS:
                self._digests.clear()
            digest = self._digests[api_key] = hash_api_key(self.secret, api_key)
        cached = self._keys.get(digest)
        if cached is not None and cached[1] > time.monotonic():
            return None, cached[0]
        return digest, None

    def remember_key(self, digest: str, raw: bytes | None) -> ApiKeyRecord | None:
        record = decode_record(raw) if raw else None
        now = time.time()
        if record is not None and not record.live(now):
            record = None
        if len(self._keys) >= _MAX_CACHED_KEYS:
            self._keys.clear()
        ttl = _KEY_TTL_S if record else _UNKNOWN_KEY_TTL_S
        if record is not None and record.expires_at is not None:
            ttl = min(ttl, record.expires_at - now)  # a rotated-out key: read again when its grace ends
        self._keys[digest] = (record, time.monotonic() + ttl)
        return record

    def load(self, version: bytes | None, raw: dict[bytes, bytes], raw_tiers: dict[bytes, bytes]) -> None:
        """Replace every override and run-time tier (from HGETALL); forget cached keys if the
        version moved (a reload at the version already known, as the change feed makes on
        subscribing, has no key change to forget)."""
        self.overrides = _readable(raw, Override, "override")
        tiers = _readable(raw_tiers, Tier, "tier")
        if tiers != self.tiers:
            self.tiers = tiers
            self.tiers_generation += 1
        if version != self._version:
            self._keys.clear()
        self._version = version
        self.generation += 1

    def parse(self, message: bytes) -> tuple[str, str | None]:
        """The change a feed message announces: ("override", client id) and ("tier", name) need
        that entry read from Redis; an API key change is applied at once: ("apikey", None)."""
        kind, _, subject = message.decode(errors="replace").partition(" ")
        if kind == "apikey":
            self.forget_key(subject)
            return kind, None
        return kind, subject if kind in ("override", "tier") else None

    def needs_reload(self, version: bytes | None, heard: bool) -> bool:
        """After a version poll: True if the version moved while no message came (the feed
        lost some, so reload everything). Records the version either way."""
        moved = version != self._version
        self._version = version
        return moved and not heard

    def apply_fetched(self, kind: str, subject: str, raw: bytes | None) -> None:
        """Apply an override or a tier (``kind``) read from Redis after a feed message; None removes it."""
        if kind == "tier":
            _put(self.tiers, subject, Tier, raw)
            self.tiers_generation += 1
        else:
            _put(self.overrides, subject, Override, raw)
        self.generation += 1

    @staticmethod
    def hash_of(kind: str) -> str:
        """The Redis hash an override or a tier (``kind``) is read from."""
        return TIERS_HASH if kind == "tier" else OVERRIDES_HASH

    def forget_key(self, digest: str) -> None:
        self._keys.pop(digest, None)
        self.generation += 1


class LiveState(LiveCache):
    """The cache, followed with an asyncio task."""

    def __init__(self, control: ControlClient, runner: AsyncScriptRunner | AsyncClusterRunner,
                 api_key_secret: bytes | None, server: str = "redis") -> None:
        super().__init__(api_key_secret)
        self.control = control
        self.runner = runner
        self.outage = _feed_outage(server)
        self._task: asyncio.Task | None = None

    async def api_key(self, api_key: str) -> ApiKeyRecord | None:
        """The live record of ``api_key``, or None if unknown or revoked (cached; one HGET on a miss)."""
        digest, record = self.known(api_key)
        if digest is None:
            return record
        return self.remember_key(digest, await self.runner.execute("HGET", KEYS_HASH, digest))

    async def start(self) -> None:
        """Follow changes from now on, and load the current state (raises if Redis is down)."""
        self._task = asyncio.get_running_loop().create_task(self._follow())
        await self.reload()

    async def aclose(self) -> None:
        """Stop following changes (waits at most two poll intervals for the task)."""
        # a flag as well as cancel(): redis-py's read timeouts can swallow a cancellation
        self._closing = True
        if self._task:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=2 * POLL_INTERVAL_S)
            self._task = None

    @property
    def client(self) -> aioredis.Redis:
        """The client of the node holding run-time state (on a cluster, the one its slot map names now)."""
        return self.control.current()

    async def reload(self) -> None:
        """Read the version, every override and every run-time tier in one transaction, and apply them."""
        pipe = self.client.pipeline(transaction=True)
        pipe.get(VERSION_KEY)
        pipe.hgetall(OVERRIDES_HASH)
        pipe.hgetall(TIERS_HASH)
        self.load(*await pipe.execute())

    async def _apply(self, message: bytes) -> None:
        kind, subject = self.parse(message)
        if subject is not None:
            self.apply_fetched(kind, subject, as_bytes(await self.client.hget(self.hash_of(kind), subject)))

    async def _follow(self) -> None:
        while not self._closing:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANGES_CHANNEL)
                await self.reload()  # anything missed while not subscribed
                self.outage.succeeded()
                await self._listen(pubsub)
            except asyncio.CancelledError:
                raise
            except _FEED_ERRORS as exc:
                if self._closing:
                    return
                self.outage.failed(exc)
                self.control.failed()
                await asyncio.sleep(self.outage.retry_delay())
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
                if self.needs_reload(as_bytes(await self.client.get(VERSION_KEY)), heard):
                    await self.reload()
                heard = False
                next_poll = time.monotonic() + POLL_INTERVAL_S


class SyncLiveState(LiveCache):
    """The cache, followed by a daemon thread (for WSGI processes)."""

    def __init__(self, client: redis.Redis | RedisCluster, api_key_secret: bytes | None,
                 server: str = "redis") -> None:
        super().__init__(api_key_secret)
        self.client = client
        self.outage = _feed_outage(server)
        self._thread: threading.Thread | None = None

    def api_key(self, api_key: str) -> ApiKeyRecord | None:
        """The live record of ``api_key``, or None if unknown or revoked (cached; one HGET on a miss)."""
        digest, record = self.known(api_key)
        if digest is None:
            return record
        return self.remember_key(digest, as_bytes(self.client.hget(KEYS_HASH, digest)))

    def start(self) -> None:
        """Follow changes in a daemon thread, and load the current state (raises if Redis is down)."""
        self._thread = threading.Thread(target=self._follow, name="ratewarden-changes", daemon=True)
        self._thread.start()
        self.reload()

    def close(self) -> None:
        """Stop following changes (waits at most two poll intervals and a second for the thread)."""
        self._closing = True
        if self._thread is not None:
            self._thread.join(2 * POLL_INTERVAL_S + 1)
            self._thread = None

    def reload(self) -> None:
        """Read the version, every override and every run-time tier in one transaction, and apply them."""
        pipe = self.client.pipeline(transaction=True)
        pipe.get(VERSION_KEY)
        pipe.hgetall(OVERRIDES_HASH)
        pipe.hgetall(TIERS_HASH)
        self.load(*pipe.execute())

    def _apply(self, message: bytes) -> None:
        kind, subject = self.parse(message)
        if subject is not None:
            self.apply_fetched(kind, subject, as_bytes(self.client.hget(self.hash_of(kind), subject)))

    def _follow(self) -> None:
        while not self._closing:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(CHANGES_CHANNEL)
                self.reload()
                self.outage.succeeded()
                next_poll = time.monotonic() + POLL_INTERVAL_S
                heard = False
                while not self._closing:
                    message = pubsub.get_message(timeout=POLL_INTERVAL_S)
                    if message is not None and message["type"] == "message":
                        self._apply(message["data"])
                        heard = True
                    if time.monotonic() >= next_poll:
                        if self.needs_reload(as_bytes(self.client.get(VERSION_KEY)), heard):
                            self.reload()
                        heard = False
                        next_poll = time.monotonic() + POLL_INTERVAL_S
            except _FEED_ERRORS as exc:
                if self._closing:
                    return
                self.outage.failed(exc)
                time.sleep(self.outage.retry_delay())
            finally:
                try:
                    pubsub.close()
                except (redis.RedisError, OSError):
                    pass
