"""The outcome of deciding one request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .identity import Identity
    from .plan import CompiledRule, Plan

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

    @classmethod
    def unlimited(cls, identity: Identity, route: str, cost: int = 1, exempt: bool = False) -> Decision:
        """Allowed with no rule consulted: an allow-listed client, a route without rules, an exempt route."""
        return cls(True, identity.tier, route, identity.client_id, cost, exempt=exempt, identity=identity)

    @classmethod
    def admitted(cls, identity: Identity, plan: Plan, now_us: int, head: CompiledRule | None = None,
                 remaining: int = 0, reset_s: float = 0.0, *, leases: tuple[tuple[str, str], ...] = (),
                 quota: tuple[str, int, float] | None = None, settle: Settlement | None = None,
                 degraded: bool = False) -> Decision:
        """Allowed by every rule of ``plan``; ``head`` is the rule closest to exhaustion."""
        if head is None:
            return cls(True, identity.tier, plan.route, identity.client_id, plan.cost, None, None, 0, 0, 0.0, 0.0,
                       plan.policy_header, now_us, degraded, False, leases, identity=identity, quota=quota,
                       settle=settle)
        return cls(True, identity.tier, plan.route, identity.client_id, plan.cost, head.name, None, head.limit,
                   remaining, reset_s, 0.0, plan.policy_header, now_us, degraded, False, leases, identity=identity,
                   quota=quota, settle=settle)

    @classmethod
    def refused(cls, identity: Identity, plan: Plan, rule: CompiledRule, retry_s: float, now_us: int, *,
                degraded: bool = False, local: bool = False) -> Decision:
        """Denied by ``rule``, which admits the request again in ``retry_s`` seconds at the earliest."""
        return cls(False, identity.tier, plan.route, identity.client_id, plan.cost, rule.name, rule.kind, rule.limit,
                   0, retry_s, retry_s, plan.policy_header, now_us, degraded, local, identity=identity,
                   status=rule.denial_status)

    @classmethod
    def unavailable(cls, identity: Identity, plan: Plan, retry_s: float, now_us: int) -> Decision:
        """Denied with 503 because Redis could not be asked and the tier fails closed."""
        return cls(False, identity.tier, plan.route, identity.client_id, plan.cost, None, "unavailable", 0, 0,
                   retry_s, retry_s, plan.policy_header, now_us, True, identity=identity, status=503)

    @classmethod
    def blocked(cls, identity: Identity, route: str, source: str, retry_s: float, now_us: int) -> Decision:
        """Denied by a block override set by ``source`` (an operator or a detector's penalty)."""
        return cls(False, identity.tier, route, identity.client_id, rule=f"override:{source}", kind="blocked",
                   reset_s=retry_s, retry_after_s=retry_s, now_us=now_us, identity=identity)


@dataclass(frozen=True, slots=True)
class Settlement:
    """What settling a decision after its response needs: its plan, keys, request id and time."""

    plan: Plan
    keys: list[str]
    rid: str
    decided_at_us: int
