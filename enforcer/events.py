"""The request event: the contract between the enforcer and the stream (imported by ``stream``).

One event per decided request, written after the response. Versioned by ``schema``;
serialised as JSON with msgspec. ``enforcer/schema/request_event.schema.json`` is
generated from this class (``python -m ratewarden.enforcer.events``).
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
from pathlib import Path

import msgspec

from .decision import Decision
from .identity import Identity

__all__ = ["RequestEvent", "SCHEMA_VERSION", "make_event", "encode_event", "decode_event", "json_schema"]

SCHEMA_VERSION = 2  # 2: shadow_denied (version 1 events decode too)
MAX_PATH, MAX_USER_AGENT = 512, 256
SCHEMA_FILE = Path(__file__).parent / "schema" / "request_event.schema.json"


class RequestEvent(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """What happened to one request: who, where, what the enforcer decided, how it ended.

    Not tracked by the garbage collector (``gc=False``: scalars only, no cycles), so
    thousands of events waiting for a batch add no collection work.
    """

    schema: int = SCHEMA_VERSION
    event_id: str  # unique; downstream deduplicates by it
    decided_at_us: int  # Redis time of the decision (the app host's when decided without Redis)
    host_time_us: int  # the app host's clock when the response ended
    service: str
    instance: str
    client_id: str  # k:<key id> | u:<user> | ip:<address>; never the API key itself
    key_id: str | None = None
    user: str | None = None
    ip: str
    tier: str
    method: str
    route: str  # route template, e.g. "GET /v1/items/{item_id}"
    path: str  # the concrete path (truncated), for resource-level analysis
    user_agent: str | None = None
    cost: int
    allowed: bool
    rule: str | None = None  # the deciding rule (denied) or the one closest to exhaustion (allowed)
    kind: str | None = None  # rate | quota | concurrency | blocked | unavailable, when denied
    remaining: int
    retry_after_s: float
    degraded: bool  # decided without Redis
    local: bool  # denied from the process's cache of denials
    shadow_denied: str | None = None  # the shadow rule that would have denied this (admitted) request
    status: int
    latency_ms: float


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(RequestEvent)
_ids = itertools.count()
_id_prefix = secrets.token_hex(6)


def _clean(text: str | None, limit: int) -> str | None:
    """Truncated, and valid UTF-8 whatever the client sent (lone surrogates escaped)."""
    if text is None:
        return None
    text = text[:limit]
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def make_event(decision: Decision, identity: Identity, *, method: str, path: str, user_agent: str | None,
               status: int, latency_ms: float, service: str, instance: str,
               host_time_us: int | None = None) -> RequestEvent:
    """The event for a finished request (``host_time_us``: when it ended, if not now)."""
    now_us = host_time_us or int(time.time() * 1_000_000)
    return RequestEvent(
        event_id=f"{_id_prefix}-{next(_ids):x}",
        decided_at_us=decision.now_us or now_us,
        host_time_us=now_us,
        service=service,
        instance=instance,
        client_id=identity.client_id,
        key_id=identity.key_id,
        user=identity.user,
        ip=identity.ip,
        tier=decision.tier,
        method=method,
        route=decision.route,
        path=_clean(path, MAX_PATH) or "",
        user_agent=_clean(user_agent, MAX_USER_AGENT),
        cost=decision.cost,
        allowed=decision.allowed,
        rule=decision.rule,
        kind=decision.kind,
        remaining=decision.remaining,
        retry_after_s=round(decision.retry_after_s, 3),
        degraded=decision.degraded,
        local=decision.local,
        shadow_denied=decision.shadow_denied,
        status=status,
        latency_ms=round(latency_ms, 3),
    )


def encode_event(event: RequestEvent) -> bytes:
    return _encoder.encode(event)


def decode_event(data: bytes) -> RequestEvent:
    """Decode and validate; raises ``msgspec.ValidationError``/``DecodeError`` on malformed input."""
    return _decoder.decode(data)


def json_schema() -> dict:
    return msgspec.json.schema(RequestEvent)


if __name__ == "__main__":
    SCHEMA_FILE.parent.mkdir(exist_ok=True)
    SCHEMA_FILE.write_text(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n")
    print(f"wrote {SCHEMA_FILE}")
