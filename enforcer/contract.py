"""The contract between the Python side and ``lua/decide.lua``, in one place.

Everything the script and its callers must agree on: each algorithm's code and how it is
keyed, reported and approximated while Redis is down; the rule flags; the argument layout;
the shape of a deciding reply. ``tests/test_contract.py`` pins this module against the
script's source and against a real server.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from .decision import LimitKind

__all__ = [
    "ALGORITHMS", "AlgorithmSpec", "DECIDE", "DEFERRED", "FIELDS_PER_RULE", "HEAD_ARGS", "QUIET", "QUOTA_DAILY",
    "QUOTA_MONTHLY", "REFUND", "SETTLE", "SHADOW", "Reply", "spec_of",
]

FallbackModel = Literal["bucket", "in_flight", "uncounted"]


class AlgorithmSpec(NamedTuple):
    """One algorithm as the script knows it."""

    code: int  # the script's number for it
    suffix: str  # ends its counters' Redis keys
    kind: LimitKind
    takes_burst: bool  # its fifth field is a bucket capacity above the limit
    fallback: FallbackModel  # how the per-process limiter approximates it while Redis is down


ALGORITHMS: dict[str, AlgorithmSpec] = {
    "fixed_window": AlgorithmSpec(1, "fw", "rate", False, "bucket"),
    "sliding_window_counter": AlgorithmSpec(2, "swc", "rate", False, "bucket"),
    "sliding_window_log": AlgorithmSpec(3, "swl", "rate", False, "bucket"),
    "token_bucket": AlgorithmSpec(4, "tb", "rate", True, "bucket"),
    "gcra": AlgorithmSpec(5, "gcra", "rate", True, "bucket"),
    "concurrency": AlgorithmSpec(6, "conc", "concurrency", False, "in_flight"),
    # calendar quotas barely move during an outage, so they are not counted while degraded
    "quota_daily": AlgorithmSpec(7, "qd", "quota", False, "uncounted"),
    "quota_monthly": AlgorithmSpec(8, "qm", "quota", False, "uncounted"),  # fifth field: billing anchor day
}
_BY_CODE = {spec.code: spec for spec in ALGORITHMS.values()}
QUOTA_DAILY = ALGORITHMS["quota_daily"].code
QUOTA_MONTHLY = ALGORITHMS["quota_monthly"].code

# rule flags (a bit set per rule): never denies / counted only after the response / never the
# headline of the RateLimit header / settling refunds instead of counting
SHADOW, DEFERRED, QUIET, REFUND = 1, 2, 4, 8

# ARGV: mode, app time (µs, "" = Redis TIME), clock offset (µs), cost, request id, the settled
# decision's time (µs, "" when deciding); then the number of rules and FIELDS_PER_RULE per rule:
# algorithm code, limit, period (µs), burst or billing anchor day, flags
DECIDE, SETTLE = b"d", b"s"
HEAD_ARGS = 6
FIELDS_PER_RULE = 5


class Reply(NamedTuple):
    """A deciding call's reply. Rule numbers are 1-based positions in the call, 0 for none."""

    allowed: int
    decider: int  # the rule that denied (the one with the longest wait)
    now_us: int
    retry_after_us: int
    head: int  # the admitted rule closest to exhaustion (what RateLimit reports)
    head_remaining: int
    head_reset_us: int
    shadow: int  # the first shadow rule that would have denied
    shadow_retry_us: int
    quota: int  # the tightest quota
    quota_remaining: int
    quota_reset_us: int


def spec_of(code: int) -> AlgorithmSpec:
    """The algorithm with script number ``code``."""
    return _BY_CODE[code]
