"""The body of a denial: RFC 9457 ``application/problem+json``."""

from __future__ import annotations

import math

import msgspec

from .decision import Decision

__all__ = ["PROBLEM_TYPES", "problem_body"]

PROBLEM_TYPES: dict[str, tuple[str, str]] = {
    "rate": ("urn:ratewarden:problem:rate-limited", "Too many requests"),
    "concurrency": ("urn:ratewarden:problem:concurrency-limited", "Too many requests in flight"),
    "quota": ("urn:ratewarden:problem:quota-exhausted", "Quota exhausted"),
    "capacity": ("urn:ratewarden:problem:load-shed", "Endpoint capacity in use"),
    "blocked": ("urn:ratewarden:problem:blocked", "Client blocked"),
    "unavailable": ("urn:ratewarden:problem:limiter-unavailable", "Rate limiter unavailable"),
}

_encode = msgspec.json.Encoder().encode


def problem_body(decision: Decision) -> bytes:
    """The problem document naming the limit, its kind and when to retry."""
    kind = decision.kind or "rate"
    type_uri, title = PROBLEM_TYPES[kind]
    retry = max(1, math.ceil(decision.retry_after_s))
    if kind == "quota":
        detail = f"The {decision.rule} quota of {decision.limit} is used up; it resets in {retry} s."
    elif kind == "blocked":
        detail = f"Requests from this client are blocked; retry in {retry} s."
    elif kind == "capacity":
        detail = (f"The shared capacity {decision.rule!r} of this endpoint is in use for tier {decision.tier}; "
                  f"retry in {retry} s.")
    elif kind == "unavailable":
        detail = f"Limits cannot be checked right now and this tier fails closed; retry in {retry} s."
    else:
        detail = f"Limit {decision.rule!r} ({decision.limit}) reached; retry in {retry} s."
    return _encode({
        "type": type_uri,
        "title": title,
        "status": decision.status,
        "detail": detail,
        "policy": decision.rule,
        "kind": kind,
        "tier": decision.tier,
        "route": decision.route,
        "retry_after": retry,
    })
