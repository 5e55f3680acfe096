"""Rate-limit response headers: IETF draft 11 ``RateLimit-Policy``/``RateLimit``,
the legacy ``X-RateLimit-*`` trio, and ``Retry-After`` on denials only."""

from __future__ import annotations

import functools
import math

from .decision import Decision

__all__ = ["rate_limit_headers"]

Headers = list[tuple[bytes, bytes]]


@functools.lru_cache(maxsize=1024)
def _encoded(policy_header: str) -> bytes:
    return policy_header.encode()


def rate_limit_headers(decision: Decision, *, draft: bool = True, legacy: bool = True) -> Headers:
    """One header set for ``decision`` (empty when no rule applied)."""
    headers: Headers = []
    if decision.policy_header:
        reset = max(0, math.ceil(decision.reset_s))
        if draft:
            headers.append((b"ratelimit-policy", _encoded(decision.policy_header)))
            if decision.rule:
                headers.append((b"ratelimit", b'"%s";r=%d;t=%d' % (decision.rule.encode(), decision.remaining, reset)))
        if legacy and decision.rule:
            headers += [
                (b"x-ratelimit-limit", b"%d" % decision.limit),
                (b"x-ratelimit-remaining", b"%d" % decision.remaining),
                (b"x-ratelimit-reset", b"%d" % reset),
            ]
    if not decision.allowed:
        headers.append((b"retry-after", str(max(1, math.ceil(decision.retry_after_s))).encode()))
    return headers
