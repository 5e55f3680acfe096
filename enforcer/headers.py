"""Rate-limit response headers: IETF draft 11 ``RateLimit-Policy``/``RateLimit``,
the legacy ``X-RateLimit-*`` trio, ``Retry-After`` on denials only, and (by setting)
``X-Ratewarden-Shadow`` naming the shadow rule that would have denied."""

from __future__ import annotations

import functools
import math

from .decision import Decision

__all__ = ["rate_limit_headers"]

Headers = list[tuple[bytes, bytes]]


@functools.lru_cache(maxsize=1024)
def _encoded(policy_header: str) -> bytes:
    return policy_header.encode()


def rate_limit_headers(decision: Decision, *, draft: bool = True, legacy: bool = True,
                       shadow: bool = False) -> Headers:
    """One header set for ``decision`` (empty when no rule applied).

    ``RateLimit`` lists the rule closest to exhaustion and, if another, the tightest
    quota, so its real reset (a billing anchor's) is always reported.
    """
    headers: Headers = []
    if decision.policy_header:
        reset = max(0, math.ceil(decision.reset_s))
        if draft:
            headers.append((b"ratelimit-policy", _encoded(decision.policy_header)))
            if decision.rule:
                value = b'"%s";r=%d;t=%d' % (decision.rule.encode(), decision.remaining, reset)
                quota = decision.quota
                if quota is not None and quota[0] != decision.rule:
                    value += b', "%s";r=%d;t=%d' % (quota[0].encode(), quota[1], max(0, math.ceil(quota[2])))
                headers.append((b"ratelimit", value))
        if legacy and decision.rule:
            headers += [
                (b"x-ratelimit-limit", b"%d" % decision.limit),
                (b"x-ratelimit-remaining", b"%d" % decision.remaining),
                (b"x-ratelimit-reset", b"%d" % reset),
            ]
    if not decision.allowed:
        headers.append((b"retry-after", str(max(1, math.ceil(decision.retry_after_s))).encode()))
    if shadow and decision.shadow_denied:
        headers.append((b"x-ratewarden-shadow", b'"%s";t=%d' % (
            decision.shadow_denied.encode(), max(1, math.ceil(decision.shadow_retry_after_s)))))
    return headers
