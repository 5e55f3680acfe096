"""API keys: issued once, stored in Redis only as keyed hashes (HMAC-SHA256)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

import msgspec
import redis
from redis.cluster import RedisCluster

from .changes import as_bytes, commit_change

__all__ = ["ApiKeyRecord", "ApiKeyStore", "hash_api_key", "KEYS_HASH"]

KEYS_HASH = "rw:{ctl}:apikeys"  # field: HMAC of the key -> ApiKeyRecord (JSON)
IDS_HASH = "rw:{ctl}:apikeys:ids"  # field: key id -> HMAC of the key
_KEY_BYTES = 24


class ApiKeyRecord(msgspec.Struct, frozen=True):
    """What the registry knows of a key. The key itself is never stored."""

    id: str
    owner: str
    tier: str | None
    prefix: str
    created_at: float
    revoked_at: float | None = None


def hash_api_key(secret: bytes, api_key: str) -> str:
    """The keyed hash a key is stored and looked up under."""
    return hmac.new(secret, api_key.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


_encode = msgspec.json.Encoder().encode
decode_record = msgspec.json.Decoder(ApiKeyRecord).decode


class ApiKeyStore:
    """Create, list and revoke API keys (management side, synchronous)."""

    def __init__(self, client: redis.Redis | RedisCluster, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the API key secret must be at least 16 bytes (set RATEWARDEN_API_KEY_SECRET)")
        self.client = client
        self.secret = secret

    def create(self, owner: str, tier: str | None = None) -> tuple[str, ApiKeyRecord]:
        """A new key for ``owner``: returns (the secret key, shown only now; its record)."""
        api_key = "rw_" + secrets.token_urlsafe(_KEY_BYTES)
        record = ApiKeyRecord(
            id="key_" + secrets.token_hex(6), owner=owner, tier=tier, prefix=api_key[:7], created_at=time.time()
        )
        digest = hash_api_key(self.secret, api_key)
        def write(pipe: redis.client.Pipeline) -> None:
            pipe.hset(KEYS_HASH, digest, _encode(record))
            pipe.hset(IDS_HASH, record.id, digest)

        commit_change(self.client, f"apikey {digest}", write)
        return api_key, record

    def list(self) -> list[ApiKeyRecord]:
        return sorted((decode_record(v) for v in self.client.hvals(KEYS_HASH)), key=lambda r: r.created_at)

    def revoke(self, key_id: str) -> bool:
        """Revoke by id; enforcers refuse the key within a second. False if unknown."""
        stored = as_bytes(self.client.hget(IDS_HASH, key_id))
        if stored is None:
            return False
        digest = stored.decode()
        raw = self.client.hget(KEYS_HASH, digest)
        if raw is None:
            return False
        record = msgspec.structs.replace(decode_record(raw), revoked_at=time.time())
        commit_change(self.client, f"apikey {digest}", lambda pipe: pipe.hset(KEYS_HASH, digest, _encode(record)))
        return True
