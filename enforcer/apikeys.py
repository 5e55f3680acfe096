"""API keys: issued once, stored in Redis only as keyed hashes (HMAC-SHA256).

A key id names the client (``k:<id>``) for its whole life: rotating gives the id a new secret
and leaves the old one valid until ``expires_at`` (a grace period), so callers can switch
without a gap and their counters, quotas and history stay the same.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

import msgspec
import redis
from redis.cluster import RedisCluster

from .changes import CHANGES_CHANNEL, as_bytes, commit_change

__all__ = ["ApiKeyRecord", "ApiKeyStore", "hash_api_key", "KEYS_HASH", "DEFAULT_ROTATION_GRACE_S"]

KEYS_HASH = "rw:{ctl}:apikeys"  # field: HMAC of the key -> ApiKeyRecord (JSON)
IDS_HASH = "rw:{ctl}:apikeys:ids"  # field: key id -> HMAC of its current key
PREVIOUS_HASH = "rw:{ctl}:apikeys:previous"  # field: key id -> HMAC of the key it replaced (in its grace period)
DEFAULT_ROTATION_GRACE_S = 86_400.0
_KEY_BYTES = 24


class ApiKeyRecord(msgspec.Struct, frozen=True):
    """What the registry knows of a key. The key itself is never stored."""

    id: str
    owner: str
    tier: str | None
    prefix: str
    created_at: float
    revoked_at: float | None = None
    expires_at: float | None = None  # unix time the key stops working (a rotated key's grace period)
    note: str = ""

    def live(self, now: float | None = None) -> bool:
        """Neither revoked nor past its expiry."""
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > (time.time() if now is None else now)


def hash_api_key(secret: bytes, api_key: str) -> str:
    """The keyed hash a key is stored and looked up under."""
    return hmac.new(secret, api_key.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


_encode = msgspec.json.Encoder().encode
decode_record = msgspec.json.Decoder(ApiKeyRecord).decode
_UNSET = object()


class ApiKeyStore:
    """Create, list, change, rotate and revoke API keys (management side, synchronous).

    Every change bumps the change feed for each hash it touches, so enforcers drop their cached
    record of it at once (they cache a record for up to a minute otherwise)."""

    def __init__(self, client: redis.Redis | RedisCluster, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the API key secret must be at least 16 bytes (set RATEWARDEN_API_KEY_SECRET)")
        self.client = client
        self.secret = secret

    def create(self, owner: str, tier: str | None = None, note: str = "") -> tuple[str, ApiKeyRecord]:
        """A new key for ``owner``: returns (the secret key, shown only now; its record)."""
        api_key, digest = self._new_secret()
        record = ApiKeyRecord(id="key_" + secrets.token_hex(6), owner=owner, tier=tier, prefix=api_key[:7],
                              created_at=time.time(), note=note)

        def write(pipe: redis.client.Pipeline) -> None:
            pipe.hset(KEYS_HASH, digest, _encode(record))
            pipe.hset(IDS_HASH, record.id, digest)

        commit_change(self.client, f"apikey {digest}", write)
        return api_key, record

    def list(self) -> list[ApiKeyRecord]:
        """The current record of every key id (a rotated key's replaced secret is in :meth:`previous`)."""
        current = {as_bytes(d) for d in self.client.hvals(IDS_HASH)}
        stored = self.client.hgetall(KEYS_HASH)
        return sorted((decode_record(v) for d, v in stored.items() if as_bytes(d) in current),
                      key=lambda r: (r.created_at, r.id))

    def get(self, key_id: str) -> ApiKeyRecord | None:
        """The current record of ``key_id`` (revoked ones included), or None if unknown."""
        found = self._current(key_id)
        return found[1] if found else None

    def previous_all(self) -> dict[str, ApiKeyRecord]:
        """Key id -> the live record of the secret its last rotation replaced (for every such key)."""
        digests = {as_bytes(i): as_bytes(d) for i, d in self.client.hgetall(PREVIOUS_HASH).items()}
        if not digests:
            return {}
        raws = self.client.hmget(KEYS_HASH, [d.decode() for d in digests.values() if d is not None])
        records = (decode_record(raw) for raw in raws if raw)
        return {r.id: r for r in records if r.live()}

    def previous(self, key_id: str) -> ApiKeyRecord | None:
        """The record of the secret ``key_id`` replaced at its last rotation, while it is still live."""
        digest = as_bytes(self.client.hget(PREVIOUS_HASH, key_id))
        raw = self.client.hget(KEYS_HASH, digest.decode()) if digest else None
        record = decode_record(raw) if raw else None
        return record if record is not None and record.live() else None

    def update(self, key_id: str, *, owner: str | None = None, tier: str | None | object = _UNSET,
               note: str | None = None) -> ApiKeyRecord | None:
        """Change a key's owner, tier (None: the policy's default tier) or note; None if unknown."""
        changes: dict[str, object] = {}
        if owner is not None:
            changes["owner"] = owner
        if tier is not _UNSET:
            changes["tier"] = tier
        if note is not None:
            changes["note"] = note
        return self._change(key_id, changes)

    def revoke(self, key_id: str) -> bool:
        """Revoke by id (with a rotated-out secret still in its grace period); enforcers refuse the
        key within a second. False if unknown."""
        return self._change(key_id, {"revoked_at": time.time()}) is not None

    def rotate(self, key_id: str, grace_s: float = DEFAULT_ROTATION_GRACE_S) -> tuple[str, ApiKeyRecord] | None:
        """A new secret for ``key_id``; the current one keeps working for ``grace_s`` seconds more.

        Returns (the new secret, shown only now; the new record), or None if the id is unknown or
        revoked. A secret replaced at an earlier rotation stops at once: two at most are live."""
        found = self._current(key_id)
        if found is None or found[1].revoked_at is not None:
            return None
        old_digest, old = found
        now = time.time()
        api_key, digest = self._new_secret()
        record = msgspec.structs.replace(old, prefix=api_key[:7], created_at=now, expires_at=None)
        ending = msgspec.structs.replace(old, expires_at=now + max(grace_s, 0.0))
        earlier = as_bytes(self.client.hget(PREVIOUS_HASH, key_id))

        def write(pipe: redis.client.Pipeline) -> None:
            if earlier is not None:
                pipe.hdel(KEYS_HASH, earlier.decode())
            pipe.hset(KEYS_HASH, old_digest, _encode(ending))
            pipe.hset(KEYS_HASH, digest, _encode(record))
            pipe.hset(IDS_HASH, key_id, digest)
            pipe.hset(PREVIOUS_HASH, key_id, old_digest)

        commit_change(self.client, f"apikey {old_digest}", write)
        if earlier is not None:
            self.client.publish(CHANGES_CHANNEL, f"apikey {earlier.decode()}")
        return api_key, record

    def _new_secret(self) -> tuple[str, str]:
        api_key = "rw_" + secrets.token_urlsafe(_KEY_BYTES)
        return api_key, hash_api_key(self.secret, api_key)

    def _current(self, key_id: str) -> tuple[str, ApiKeyRecord] | None:
        stored = as_bytes(self.client.hget(IDS_HASH, key_id))
        if stored is None:
            return None
        raw = self.client.hget(KEYS_HASH, stored.decode())
        return (stored.decode(), decode_record(raw)) if raw else None

    def _change(self, key_id: str, changes: dict[str, object]) -> ApiKeyRecord | None:
        """Apply ``changes`` to the current record of ``key_id`` and to its rotated-out one, if any."""
        found = self._current(key_id)
        if found is None:
            return None
        digest, current = found
        updated = msgspec.structs.replace(current, **changes)
        earlier = as_bytes(self.client.hget(PREVIOUS_HASH, key_id))
        raw_earlier = self.client.hget(KEYS_HASH, earlier.decode()) if earlier else None

        def write(pipe: redis.client.Pipeline) -> None:
            pipe.hset(KEYS_HASH, digest, _encode(updated))
            if earlier is not None and raw_earlier is not None:
                pipe.hset(KEYS_HASH, earlier.decode(), _encode(msgspec.structs.replace(
                    decode_record(raw_earlier), **changes)))

        commit_change(self.client, f"apikey {digest}", write)
        if earlier is not None and raw_earlier is not None:
            self.client.publish(CHANGES_CHANNEL, f"apikey {earlier.decode()}")
        return updated
