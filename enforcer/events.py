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

__all__ = ["RequestEvent", "SCHEMA_VERSION", "make_event", "encode_event", "encode_request", "decode_event",
           "json_schema"]

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


def _values(decision: Decision, identity: Identity, method: str, path: str, user_agent: str | None, status: int,
            latency_ms: float, service: str, instance: str, host_time_us: int | None) -> tuple:
    """A finished request's event as its field values, in :class:`RequestEvent`'s field order."""
    now_us = host_time_us or int(time.time() * 1_000_000)
    return (SCHEMA_VERSION, f"{_id_prefix}-{next(_ids):x}", decision.now_us or now_us, now_us, service, instance,
            identity.client_id, identity.key_id, identity.user, identity.ip, decision.tier, method, decision.route,
            _clean(path, MAX_PATH) or "", _clean(user_agent, MAX_USER_AGENT), decision.cost, decision.allowed,
            decision.rule, decision.kind, decision.remaining, round(decision.retry_after_s, 3), decision.degraded,
            decision.local, decision.shadow_denied, status, round(latency_ms, 3))


_FIELDS = RequestEvent.__struct_fields__
# RequestEvent's fields in its order, built positionally (a sixth of the keyword construction's
# cost): it encodes to the very bytes of the RequestEvent with the same values (a test checks)
_Wire = msgspec.defstruct("_Wire", [(name, object) for name in _FIELDS], frozen=True, gc=False)


def make_event(decision: Decision, identity: Identity, *, method: str, path: str, user_agent: str | None,
               status: int, latency_ms: float, service: str, instance: str,
               host_time_us: int | None = None) -> RequestEvent:
    """The event for a finished request (``host_time_us``: when it ended, if not now)."""
    values = _values(decision, identity, method, path, user_agent, status, latency_ms, service, instance,
                     host_time_us)
    return RequestEvent(**dict(zip(_FIELDS, values, strict=True)))


def encode_request(decision: Decision, identity: Identity, method: str, path: str, user_agent: str | None,
                   status: int, latency_ms: float, service: str, instance: str, host_time_us: int | None = None
                   ) -> bytes:
    """``encode_event(make_event(...))`` without building the event (what the publisher sends)."""
    return _encoder.encode(_Wire(*_values(decision, identity, method, path, user_agent, status, latency_ms,
                                          service, instance, host_time_us)))


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
