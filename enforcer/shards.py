"""One request decided on several cluster nodes: the script call for each node's rules, one
answer from their replies, and what to give back when the request is denied. No I/O.

Each node decides its rules all-or-nothing. The request is admitted only if every node
admitted it, so nothing is ever over-admitted. When a node denies (or fails), the nodes that
admitted have counted the request: it is given back off the request path (the script's
refund mode, concurrency leases released). Until that lands, other requests may see up to
the in-flight denied requests' cost as used: a transient under-admission, never more.
Shadow rules and deferred (response-counted) rules are not given back: shadow rules never
deny, and deferred ones were not counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from .contract import DEFERRED, SHADOW
from .plan import Plan

__all__ = ["GiveBack", "group_args", "merge_replies"]

# a script reply: allowed, decider, now_us, retry_us, headline, remaining, reset_us,
# shadow, shadow_retry_us, quota, quota_remaining, quota_reset_us (rule numbers 1-based)
Reply = Sequence[int]


class GiveBack(NamedTuple):
    """What a node that admitted a request must return: counted rules, leases, and when it decided."""

    refund: list[int]
    leases: list[int]
    decided_at_us: int


def group_args(args: Sequence[object], plan: Plan, group: list[int]) -> tuple[object, ...]:
    """The deciding call's ``args`` restricted to the rules at ``group``."""
    return (*args[:6], *plan.rule_args(group))


def _global(group: list[int], rule: int) -> int:
    return group[rule - 1] + 1 if rule else 0


def merge_replies(plan: Plan, groups: list[list[int]],
                  results: Sequence[Reply | BaseException]) -> tuple[Reply | BaseException, list[GiveBack]]:
    """One reply for the request (or the first error), and what the admitting nodes must give back
    unless every node admitted."""
    replies = [(group, result) for group, result in zip(groups, results, strict=True)
               if not isinstance(result, BaseException)]
    errors = [result for result in results if isinstance(result, BaseException)]
    admitted = [(group, reply) for group, reply in replies if reply[0]]
    if not errors and len(admitted) == len(groups):
        return _admitted(plan, admitted), []
    give_back = [GiveBack([i for i in group if plan.rules[i].kind != "concurrency"
                           and not plan.rules[i].flags & (DEFERRED | SHADOW)],
                          [i for i in group if plan.rules[i].kind == "concurrency"], reply[2])
                 for group, reply in admitted]
    if errors:
        return errors[0], give_back
    return _denied(replies), give_back


def _denied(replies: list[tuple[list[int], Reply]]) -> Reply:
    """The denial that waits longest decides, as one node's script would choose."""
    group, reply = max(((g, r) for g, r in replies if not r[0]), key=lambda item: item[1][3])
    decider = _global(group, reply[1])
    shadow, shadow_retry = _first_shadow(replies)
    return [0, decider, max(r[2] for _, r in replies), reply[3], decider, 0, reply[6], shadow, shadow_retry, 0, 0, 0]


def _admitted(plan: Plan, replies: list[tuple[list[int], Reply]]) -> Reply:
    """The headline and quota are the rules closest to exhaustion over every node."""
    head = quota = (0, 0, 0)
    head_ratio = quota_ratio = 2.0
    for group, reply in replies:
        if reply[4]:
            rule = _global(group, reply[4])
            ratio = reply[5] / plan.rules[rule - 1].limit
            if ratio < head_ratio:
                head, head_ratio = (rule, reply[5], reply[6]), ratio
        if reply[9]:
            rule = _global(group, reply[9])
            ratio = reply[10] / plan.rules[rule - 1].limit
            if ratio < quota_ratio:
                quota, quota_ratio = (rule, reply[10], reply[11]), ratio
    shadow, shadow_retry = _first_shadow(replies)
    return [1, 0, max(r[2] for _, r in replies), 0, *head, shadow, shadow_retry, *quota]


def _first_shadow(replies: list[tuple[list[int], Reply]]) -> tuple[int, int]:
    found = [(_global(group, reply[7]), reply[8]) for group, reply in replies if reply[7]]
    return min(found) if found else (0, 0)
