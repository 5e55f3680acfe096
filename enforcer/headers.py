"""Rate-limit response headers: IETF draft 11 ``RateLimit-Policy``/``RateLimit``,
the legacy ``X-RateLimit-*`` trio, and ``Retry-After`` on denials only."""

from __future__ import annotations

import math

from .decision import Decision

__all__ = ["rate_limit_headers"]

Headers = list[tuple[bytes, bytes]]


def rate_limit_headers(decision: Decision, *, draft: bool = True, legacy: bool = True) -> Headers:
    """One header set for ``decision`` (empty when no rule applied)."""
    headers: Headers = []
    if decision.limited:
        reset = max(0, math.ceil(decision.reset_s))
        if draft:
            headers.append((b"ratelimit-policy", decision.policy_header.encode()))
            if decision.rule:
                headers.append((b"ratelimit", f'"{decision.rule}";r={decision.remaining};t={reset}'.encode()))
        if legacy and decision.rule:
            headers += [
                (b"x-ratelimit-limit", str(decision.limit).encode()),
                (b"x-ratelimit-remaining", str(decision.remaining).encode()),
                (b"x-ratelimit-reset", str(reset).encode()),
            ]
    if not decision.allowed:
        headers.append((b"retry-after", str(max(1, math.ceil(decision.retry_after_s))).encode()))
    return headers
