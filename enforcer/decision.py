"""The outcome of deciding one request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .identity import Identity
    from .plan import Plan

__all__ = ["Decision", "DenialKind", "LimitKind", "Settlement"]

LimitKind = Literal["rate", "quota", "concurrency", "capacity"]  # what a policy rule limits
DenialKind = Literal[LimitKind, "blocked", "unavailable"]  # and denials no rule made


@dataclass(slots=True)
class Decision:
    """Allow or deny, and why.

    ``rule``/``limit``/``remaining``/``reset_s`` describe the deciding rule when
    denied and the rule closest to exhaustion when allowed (what the RateLimit
    header reports). ``degraded`` means Redis was not consulted. ``shadow_denied``
    names the shadow rule that would have denied the request (set on admitted requests only:
    what switching the rule on would change).
    ``quota`` is the tightest quota when allowed: (name, remaining, seconds to its reset).
    """

    allowed: bool
    tier: str
    route: str
    client_id: str
    cost: int = 1
    rule: str | None = None
    kind: DenialKind | None = None
    limit: int = 0
    remaining: int = 0
    reset_s: float = 0.0
    retry_after_s: float = 0.0
    policy_header: str = ""
    now_us: int = 0
    degraded: bool = False
    local: bool = False
    leases: tuple[tuple[str, str], ...] = ()
    exempt: bool = False  # the route is exempt: nothing was decided (no headers, no event)
    identity: Identity | None = None  # the caller it was made for (set by the enforcer)
    status: int = 429  # the denial's HTTP status: 429, or 503 (limiter unavailable, load shed)
    shadow_denied: str | None = None
    shadow_retry_after_s: float = 0.0
    quota: tuple[str, int, float] | None = None
    settle: Settlement | None = None  # response-aware rules to count or refund when the response ends


@dataclass(frozen=True, slots=True)
class Settlement:
    """What settling a decision after its response needs: its plan, keys, request id and time."""

    plan: Plan
    keys: list[str]
    rid: str
    decided_at_us: int
