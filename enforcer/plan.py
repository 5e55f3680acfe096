"""Compile a policy into per-(tier, route) plans: the rules, cost and script arguments
a request on that route needs, computed once and reused for every request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .contract import ALGORITHMS, DEFERRED, FIELDS_PER_RULE, QUIET, QUOTA_DAILY, QUOTA_MONTHLY, REFUND, SHADOW, spec_of
from .decision import LimitKind
from .identity import Identity
from .policy import Capacity, Endpoint, Policy, Quotas, Rule, Scope, StatusSet, Tier, status_in

__all__ = ["CompiledRule", "Plan", "RouteLimits", "compile_plan", "UNMATCHED_ROUTE", "KeyFunction"]

UNMATCHED_ROUTE = "* (unmatched)"
_MONTH_S = 31 * 86400
_MAX_CACHED_CALLERS = 20_000


KeyFunction = Callable[[Any], "str | None | Awaitable[str | None]"]


@dataclass(frozen=True, slots=True)
class RouteLimits:
    """Limits an application attaches to one route (see ``ratewarden.enforcer.asgi.limit``).

    ``key`` computes the ``custom`` scope of a request (e.g. the username of a login).
    """

    rules: tuple[Rule, ...] = ()
    cost: int | None = None
    exempt: bool = False
    standalone: bool = False  # only these rules: not the tier's rules, endpoint rules or quotas
    key: KeyFunction | None = None


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule ready to run: its script code and how to name its Redis key."""

    name: str
    code: int
    limit: int
    period_s: float
    capacity: int
    scope: tuple[Scope, ...]
    kind: LimitKind
    policy_member: str  # "" for rules not reported in RateLimit-Policy (shadow, capacity)
    flags: int = 0
    settle_statuses: StatusSet | None = None  # counted (DEFERRED) or refunded (REFUND) after the response
    shared_key: str | None = None  # one counter for every caller (capacity)
    denial_status: int = 429

    def key(self, identity: Identity, route: str) -> str:
        """The Redis key of this rule's counter for a caller; tagged by its first dimension."""
        if self.shared_key is not None:
            return self.shared_key
        values = [_dimension(dim, identity, route) for dim in self.scope]
        rest = "".join(":" + value for value in values[1:])
        return f"rw:{{{values[0]}}}:{self.name}:{spec_of(self.code).suffix}{rest}"


def _dimension(dim: Scope, identity: Identity, route: str) -> str:
    # a missing identity falls back to the client (ultimately its IP), never to "not counted"
    if dim is Scope.client:
        return identity.client_id
    if dim is Scope.key:
        return f"k:{identity.key_id}" if identity.key_id else identity.client_id
    if dim is Scope.user:
        return f"u:{identity.user}" if identity.user else identity.client_id
    if dim is Scope.ip:
        return f"ip:{identity.ip}"
    if dim is Scope.custom:
        return f"c:{identity.custom}" if identity.custom else identity.client_id
    return f"e:{route}"


@dataclass(frozen=True, slots=True)
class Plan:
    """What deciding a request of one tier on one route takes (keys cached per caller)."""

    tier: str
    route: str
    cost: int
    exempt: bool
    fail_mode: str
    rules: tuple[CompiledRule, ...]
    script_args: tuple[bytes, ...] = field(repr=False)
    policy_header: str = ""
    lease_indices: tuple[int, ...] = ()
    response_aware: tuple[int, ...] = ()  # rules counted or refunded by the response's status
    _keys: dict[tuple[str, str, str | None, str | None], list[str]] = field(
        default_factory=dict, repr=False, compare=False)

    def settlement(self, status: int) -> list[int]:
        """The response-aware rules a response with ``status`` counts toward or refunds."""
        return [i for i in self.response_aware if status_in(status, self.rules[i].settle_statuses or ())]

    def rule_args(self, indices: list[int]) -> list[bytes]:
        """The script arguments of the rules at ``indices``: their count, then their fields."""
        args = [str(len(indices)).encode()]
        for i in indices:
            args += self.script_args[1 + FIELDS_PER_RULE * i: 1 + FIELDS_PER_RULE * (i + 1)]
        return args

    def refund_args(self, indices: list[int]) -> list[bytes]:
        """Script arguments that give back what a decision took on the rules at ``indices``."""
        args = self.rule_args(indices)
        for position in range(len(indices)):
            args[FIELDS_PER_RULE * (position + 1)] = str(REFUND).encode()  # each rule's last field: its flags
        return args

    def keys(self, identity: Identity) -> list[str]:
        caller = (identity.client_id, identity.ip, identity.user, identity.custom)
        keys = self._keys.get(caller)
        if keys is None:
            if len(self._keys) >= _MAX_CACHED_CALLERS:
                self._keys.clear()
            keys = self._keys[caller] = [rule.key(identity, self.route) for rule in self.rules]
        return keys


def _policy_member(name: str, quota: int, window_s: float, unit: str | None = None) -> str:
    member = f'"{name}";q={quota};w={max(1, round(window_s))}'
    return member + (f';qu="{unit}"' if unit else "")


def _flags(shadow: bool, counting: Rule | Quotas) -> int:
    flags = SHADOW if shadow else 0
    if counting.count_statuses is not None:
        flags |= DEFERRED
    if counting.refund_statuses is not None:
        flags |= REFUND
    return flags


def _compile_rule(rule: Rule, shadow: bool) -> CompiledRule:
    spec = ALGORITHMS[rule.algorithm]
    shadow = shadow or rule.shadow
    member = _policy_member(rule.name, rule.limit, rule.period,
                            "concurrent-requests" if spec.kind == "concurrency" else None)
    return CompiledRule(
        name=rule.name,
        code=spec.code,
        limit=rule.limit,
        period_s=rule.period,
        capacity=rule.burst or 0,
        scope=tuple(rule.scope),
        kind=spec.kind,
        policy_member="" if shadow else member,
        flags=_flags(shadow, rule),
        settle_statuses=rule.settle_statuses,
    )


def _quota_rules(quotas: Quotas, shadow: bool) -> list[CompiledRule]:
    rules = []
    flags = _flags(shadow, quotas)
    if quotas.daily:
        rules.append(
            CompiledRule("daily", QUOTA_DAILY, quotas.daily, 86400.0, 0, (Scope.client,), "quota",
                         "" if shadow else _policy_member("daily", quotas.daily, 86400), flags,
                         quotas.settle_statuses)
        )
    if quotas.monthly:
        rules.append(
            CompiledRule("monthly", QUOTA_MONTHLY, quotas.monthly, _MONTH_S, quotas.billing_anchor_day or 0,
                         (Scope.client,), "quota",
                         "" if shadow else _policy_member("monthly", quotas.monthly, _MONTH_S), flags,
                         quotas.settle_statuses)
        )
    return rules


def _capacity_rules(capacity: Capacity, tier_name: str, shadow: bool) -> list[CompiledRule]:
    """The capacity as a whole, and the tier's share of it if it has one (shared keys, one hash tag)."""
    code = ALGORITHMS[capacity.algorithm].code
    suffix = spec_of(code).suffix
    flags = QUIET | (SHADOW if shadow or capacity.shadow else 0)
    prefix = f"rw:{{cap:{capacity.name}}}"
    rules = [CompiledRule(capacity.name, code, capacity.limit, capacity.period, 0, (), "capacity", "", flags,
                          shared_key=f"{prefix}:all:{suffix}", denial_status=capacity.shed_status)]
    share = capacity.tier_limit(tier_name)
    if share is not None:
        rules.append(CompiledRule(f"{capacity.name}:{tier_name}", code, share, capacity.period, 0, (), "capacity", "",
                                  flags, shared_key=f"{prefix}:tier:{tier_name}:{suffix}",
                                  denial_status=capacity.shed_status))
    return rules


def compile_plan(
    policy: Policy,
    tier_name: str,
    route: str,
    route_limits: RouteLimits | None = None,
    tier: Tier | None = None,
) -> Plan:
    """The plan for ``tier_name`` on ``route`` (``"GET /v1/items/{item_id}"``).

    ``tier`` replaces the policy's tier of that name (a per-client override).
    """
    tier = tier or policy.tiers[tier_name]
    endpoint: Endpoint | None = policy.endpoint_for(route)
    route_limits = route_limits or RouteLimits()
    if route_limits.standalone:
        rules, quotas = list(route_limits.rules), Quotas()
    else:
        rules = [r for r in tier.rules if r.applies_to(route)] + (endpoint.rules if endpoint else [])
        rules += route_limits.rules
        quotas = tier.quotas
    cost = route_limits.cost or (endpoint.cost if endpoint else 1)
    exempt = route_limits.exempt or bool(endpoint and endpoint.exempt)
    compiled: list[CompiledRule] = []
    if not exempt:
        tier_rules = set(map(id, tier.rules))
        compiled += [_compile_rule(rule, policy.shadow or (tier.shadow and id(rule) in tier_rules)) for rule in rules]
        compiled += _quota_rules(quotas, policy.shadow or tier.shadow)
        for capacity in policy.capacity_for(route):
            compiled += _capacity_rules(capacity, tier_name, policy.shadow)
    for rule in compiled:
        admits = rule.capacity or rule.limit
        if rule.kind != "concurrency" and cost > admits:
            raise ValueError(
                f"route {route!r} costs {cost} but rule {rule.name!r} of tier {tier_name!r} "
                f"admits at most {admits} per request: no request could ever pass"
            )
    args: list[bytes] = [str(len(compiled)).encode()]
    for rule in compiled:
        args += [str(rule.code).encode(), str(rule.limit).encode(),
                 str(int(rule.period_s * 1_000_000)).encode(), str(rule.capacity).encode(), str(rule.flags).encode()]
    return Plan(
        tier=tier_name,
        route=route,
        cost=cost,
        exempt=exempt,
        fail_mode=tier.fail_mode,
        rules=tuple(compiled),
        script_args=tuple(args),
        policy_header=", ".join(rule.policy_member for rule in compiled if rule.policy_member),
        lease_indices=tuple(i for i, rule in enumerate(compiled) if rule.kind == "concurrency"),
        response_aware=tuple(i for i, rule in enumerate(compiled) if rule.flags & (DEFERRED | REFUND)),
    )
