"""The policy model: tiers of rules, quotas and endpoint settings, validated by pydantic."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PositiveInt, field_validator, model_validator

from .durations import parse_duration
from .rates import parse_rates

__all__ = ["Algorithm", "Scope", "Rule", "Quotas", "Tier", "Endpoint", "Capacity", "Policy", "StatusSet", "status_in",
           "parse_route_pattern", "route_matches", "rules_from", "with_tier_shares"]

Seconds = Annotated[float, BeforeValidator(parse_duration)]
_NAME = r"^[A-Za-z0-9_.-]{1,64}$"
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "*"}


class Algorithm(StrEnum):
    """How a rule counts. All run inside Redis, atomically."""

    fixed_window = "fixed_window"
    sliding_window_counter = "sliding_window_counter"
    sliding_window_log = "sliding_window_log"
    token_bucket = "token_bucket"
    gcra = "gcra"
    concurrency = "concurrency"


class Scope(StrEnum):
    """What a rule counts per. ``client`` is the caller's primary identity:
    its API key, else its user id, else its IP address. ``custom`` is what the
    route's key function returns (see ``ratewarden.enforcer.asgi.limit``); the client without one."""

    client = "client"
    key = "key"
    user = "user"
    ip = "ip"
    endpoint = "endpoint"
    custom = "custom"  # the value the route's key function returns (e.g. the username of a login)


_SCOPE_ORDER = list(Scope)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_route_pattern(value: object) -> str:
    """Normalise ``METHOD /path/template``; ``*`` as method matches any, a trailing ``*`` a prefix."""
    parts = value.strip().split(None, 1) if isinstance(value, str) else []
    if len(parts) != 2 or parts[0].upper() not in _METHODS or not parts[1].startswith("/"):
        raise ValueError(
            f"invalid route {value!r}: expected 'METHOD /path' such as 'GET /v1/items/{{item_id}}' "
            f"(methods: {', '.join(sorted(_METHODS))}; a trailing * matches a prefix)"
        )
    return f"{parts[0].upper()} {parts[1]}"


def route_matches(pattern: str, route: str) -> bool:
    """True if the normalised ``pattern`` covers ``route`` (``GET /v1/items/{item_id}``)."""
    method, path = pattern.split(" ", 1)
    route_method, _, route_path = route.partition(" ")
    if method != "*" and method != route_method:
        return False
    if path.endswith("*"):
        return route_path.startswith(path[:-1])
    return path == route_path


Route = Annotated[str, BeforeValidator(parse_route_pattern)]


def _one_rule_per_rate(value: object) -> object:
    """A list of rules where an item may be a rate string or ``{"rate": ...}`` holding several
    rates (``"10/minute;100/hour"``): each rate becomes a rule of its own (named by its rate)."""
    if not isinstance(value, (list, tuple)):
        return value
    expanded: list[object] = []
    for item in value:
        fields = {"rate": item} if isinstance(item, str) else item
        text = fields.get("rate") if isinstance(fields, dict) else None
        try:
            rates = parse_rates(text) if isinstance(text, str) else []
        except ValueError:
            rates = []  # the rule's own validation names the problem, at its index
        if len(rates) > 1 and "name" not in fields:
            expanded += [{**fields, "rate": f"{rate.limit}/{rate.period_s}s"} for rate in rates]
        else:
            expanded.append(fields)
    return expanded


def parse_statuses(value: object) -> tuple[tuple[int, int], ...]:
    """``[401, 403, "5xx"]`` -> ``((401, 401), (403, 403), (500, 599))``."""
    items = value if isinstance(value, (list, tuple)) else [value]
    ranges = []
    for item in items:
        if isinstance(item, (list, tuple)) and len(item) == 2:  # already parsed
            ranges.append((int(item[0]), int(item[1])))
            continue
        text = str(item).strip().lower()
        if re.fullmatch(r"[1-5]xx", text):
            ranges.append((int(text[0]) * 100, int(text[0]) * 100 + 99))
        elif re.fullmatch(r"[1-5][0-9][0-9]", text):
            ranges.append((int(text), int(text)))
        else:
            raise ValueError(f"invalid status {item!r}: expected a code such as 401 or a class such as '5xx'")
    if not ranges:
        raise ValueError("list at least one status")
    return tuple(ranges)


StatusSet = Annotated[tuple[tuple[int, int], ...], BeforeValidator(parse_statuses)]


def status_in(status: int, statuses: StatusSet) -> bool:
    """True if ``status`` falls in one of the ranges of ``statuses``."""
    return any(low <= status <= high for low, high in statuses)


class _ResponseAware(_Model):
    """Counting that depends on how the response ended."""

    count_statuses: StatusSet | None = Field(
        default=None, description="count only responses with these statuses (e.g. [401, 403]); "
        "the limit is still checked before the handler runs")
    refund_statuses: StatusSet | None = Field(
        default=None, description="give a request back when its response has one of these statuses (e.g. ['5xx'])")

    @model_validator(mode="after")
    def _count_or_refund(self) -> _ResponseAware:
        if self.count_statuses is not None and self.refund_statuses is not None:
            raise ValueError("count_statuses and refund_statuses exclude each other: "
                             "a rule counting only some responses has nothing to refund")
        return self

    @property
    def settle_statuses(self) -> StatusSet | None:
        """The statuses whose responses are settled after the fact (counted or refunded), if any."""
        return self.count_statuses if self.count_statuses is not None else self.refund_statuses


class Rule(_ResponseAware):
    """One limit: ``limit`` units per ``period`` counted per ``scope`` with ``algorithm``.

    ``rate: "10/minute"`` may stand for ``limit`` and ``period`` (see ``ratewarden.enforcer.rates``);
    without a ``name`` the rate names the rule (``10-per-1m``). A rule written as a bare rate string
    is ``{"rate": ...}`` with every other field at its default.

    ``shadow`` rules are evaluated and counted but never deny: the request is admitted and
    the rule that would have denied it is reported (event, optional header).
    """

    name: str = Field(pattern=_NAME)
    algorithm: Algorithm = Algorithm.sliding_window_counter
    limit: PositiveInt = Field(description="units allowed per period (in-flight requests for concurrency)")
    period: Seconds = Field(description="window length; the lease timeout for concurrency")
    burst: PositiveInt | None = Field(default=None, description="bucket capacity (token_bucket, gcra); default: limit")
    scope: list[Scope] = Field(default_factory=lambda: [Scope.client], min_length=1)
    endpoints: list[Route] | None = Field(default=None, description="only on these routes; default: all")
    shadow: bool = Field(default=False, description="evaluate and report, never deny")

    @model_validator(mode="before")
    @classmethod
    def _from_rate(cls, data: object) -> object:
        if isinstance(data, str):
            data = {"rate": data}
        if not isinstance(data, dict) or "rate" not in data:
            return data
        fields = dict(data)
        text = fields.pop("rate")
        if "limit" in fields or "period" in fields:
            raise ValueError("give either rate or limit and period, not both")
        rates = parse_rates(text)
        if len(rates) != 1:
            raise ValueError(f"rate {text!r} holds {len(rates)} rates: one rule has one rate "
                             "(a list of rules takes 'a;b' and makes a rule of each)")
        fields.setdefault("name", rates[0].name)
        fields["limit"], fields["period"] = rates[0].limit, rates[0].period_s
        return fields

    @field_validator("scope")
    @classmethod
    def _canonical_scope(cls, scope: list[Scope]) -> list[Scope]:
        if len(set(scope)) != len(scope):
            raise ValueError("scope lists a dimension twice")
        return sorted(scope, key=_SCOPE_ORDER.index)

    @model_validator(mode="after")
    def _burst_only_for_buckets(self) -> Rule:
        if self.burst is not None and self.algorithm not in (Algorithm.token_bucket, Algorithm.gcra):
            raise ValueError(f"burst applies only to token_bucket and gcra, not {self.algorithm.value}")
        if self.period < 0.001:
            raise ValueError("period must be at least 1ms")
        if self.algorithm is Algorithm.concurrency and (self.count_statuses or self.refund_statuses):
            raise ValueError("count_statuses and refund_statuses do not apply to concurrency "
                             "(its slot is freed when the response ends, whatever its status)")
        return self

    @property
    def capacity(self) -> int:
        """The most units one request may cost and still be admitted."""
        return self.burst or self.limit

    def applies_to(self, route: str) -> bool:
        return self.endpoints is None or any(route_matches(p, route) for p in self.endpoints)


Rules = Annotated[list[Rule], BeforeValidator(_one_rule_per_rate)]


def rules_from(*specs: Rule | str | dict[str, object], **defaults: object) -> tuple[Rule, ...]:
    """Rules from rate strings (``"10/minute;100/hour"``: one rule each), mappings as in a policy
    file (``rate`` or ``limit``/``period``) or ready rules; ``defaults`` fill fields a string or
    mapping leaves out (e.g. ``scope``). Raises pydantic's ValidationError naming the bad field."""
    rules: list[Rule] = []
    for spec in specs:
        if isinstance(spec, Rule):
            rules.append(spec)
            continue
        items = _one_rule_per_rate([spec])
        assert isinstance(items, list)
        rules += [Rule.model_validate({**defaults, **item}) if isinstance(item, dict) else Rule.model_validate(item)
                  for item in items]
    return tuple(rules)


class Quotas(_ResponseAware):
    """Calendar quotas (UTC), counted in cost units of admitted requests only
    (of those whose response matches ``count_statuses``, if set)."""

    daily: PositiveInt | None = None
    monthly: PositiveInt | None = None
    billing_anchor_day: int | None = Field(
        default=None, ge=1, le=31, description="monthly quota resets on this day (clamped to month length)"
    )


Share = Annotated[float, Field(gt=0, le=1)]


class Tier(_Model):
    """A named plan: its rules, its quotas, its shares of capacities and what to do when Redis is away."""

    rules: Rules = Field(default_factory=list)
    quotas: Quotas = Field(default_factory=Quotas)
    fail_mode: Literal["open", "closed"] = "open"
    shadow: bool = Field(default=False, description="every rule and quota of this tier is a shadow")
    capacity_shares: dict[str, Share] | None = Field(
        default=None, description="capacity name -> this tier's share of it (0-1], in place of what the "
        "capacities' `shares` say of this tier (a capacity left out: no share); null: as they say")

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[Rule]) -> list[Rule]:
        seen: set[str] = set()
        for rule in rules:
            if rule.name in seen:
                raise ValueError(f"rule name {rule.name!r} used twice in this tier")
            seen.add(rule.name)
        return rules


class Endpoint(_Model):
    """Settings for the routes a pattern matches: cost, exemption, extra rules for every tier."""

    route: Route
    cost: PositiveInt = 1
    exempt: bool = False
    rules: Rules = Field(default_factory=list)


class Capacity(_Model):
    """What an endpoint (or a group of them) can serve, all clients together, and each tier's share.

    A tier listed in ``shares`` may use at most that fraction of ``limit``; since the
    shares sum to at most 1, each is also reserved against the other listed tiers. A tier
    not listed (e.g. trusted) is limited only by the capacity itself: never shed while
    capacity remains. Counted in request cost units, in the same script call as the
    client's own limits.
    """

    name: str = Field(pattern=_NAME)
    endpoints: list[Route] = Field(min_length=1)
    limit: PositiveInt = Field(description="cost units per period, all clients together")
    period: Seconds = 1.0
    algorithm: Literal[Algorithm.fixed_window, Algorithm.sliding_window_counter] = Algorithm.sliding_window_counter
    shares: dict[str, Share] = Field(
        default_factory=dict, description="tier -> the most of the capacity it may use (0-1]")
    shed_status: Literal[429, 503] = Field(429, description="429 (rate limited) or 503 with Retry-After (load shed)")
    shadow: bool = False

    @model_validator(mode="after")
    def _shares_fit(self) -> Capacity:
        if sum(self.shares.values()) > 1 + 1e-9:
            raise ValueError(f"shares sum to {sum(self.shares.values()):g}: at most 1, so each is reserved")
        for tier, share in self.shares.items():
            if not self.tier_limit(tier):
                raise ValueError(f"share {share:g} of {self.limit} leaves tier {tier!r} less than one unit")
        return self

    def tier_limit(self, tier: str) -> int | None:
        """The units ``tier`` may use per period, or None if only the capacity bounds it."""
        share = self.shares.get(tier)
        return None if share is None else int(share * self.limit)


class Policy(_Model):
    """The whole policy: tiers, which tier anonymous and keyed callers get, endpoint settings."""

    version: Literal[1] = 1
    tiers: dict[str, Tier]
    default_tier: str = Field(default="free", description="tier of an API key or user with none of its own")
    anonymous_tier: str = Field(default="anonymous", description="tier of callers with no key and no user")
    endpoints: list[Endpoint] = Field(default_factory=list)
    capacity: list[Capacity] = Field(default_factory=list, description="shared capacity of endpoints, by tier")
    shadow: bool = Field(default=False, description="every rule of the policy is a shadow: nothing is denied")

    @model_validator(mode="before")
    @classmethod
    def _tiers_own_shares(cls, data: object) -> object:
        """Fold each tier's ``capacity_shares`` into the capacities' ``shares`` (then validated as usual)."""
        if not isinstance(data, dict) or not isinstance(data.get("tiers"), dict):
            return data
        given = {}
        for name, tier in data["tiers"].items():
            shares = tier.capacity_shares if isinstance(tier, Tier) else (
                tier.get("capacity_shares") if isinstance(tier, dict) else None)
            if isinstance(shares, dict):
                given[name] = shares
        if not given or not isinstance(data.get("capacity"), list):
            return data
        return {**data, "capacity": [with_tier_shares(c, given) for c in data["capacity"]]}

    @field_validator("tiers")
    @classmethod
    def _tier_names(cls, tiers: dict[str, Tier]) -> dict[str, Tier]:
        if not tiers:
            raise ValueError("at least one tier is required")
        for name in tiers:
            if not re.match(_NAME, name):
                raise ValueError(f"tier name {name!r} must match {_NAME}")
        return tiers

    @model_validator(mode="after")
    def _known_tiers(self) -> Policy:
        for field in ("default_tier", "anonymous_tier"):
            name = getattr(self, field)
            if name not in self.tiers:
                raise ValueError(f"{field} {name!r} is not a tier; tiers are: {', '.join(self.tiers)}")
        names = [c.name for c in self.capacity]
        if len(set(names)) != len(names):
            raise ValueError("capacity names must be unique")
        for tier_name, tier in self.tiers.items():
            unknown = set(tier.capacity_shares or ()) - set(names)
            if unknown:
                raise ValueError(f"tier {tier_name!r} has capacity_shares of unknown capacities {sorted(unknown)}; "
                                 f"capacities are: {', '.join(names) or 'none'}")
        for capacity in self.capacity:
            unknown = set(capacity.shares) - set(self.tiers)
            if unknown:
                raise ValueError(f"capacity {capacity.name!r} shares name unknown tiers {sorted(unknown)}; "
                                 f"tiers are: {', '.join(self.tiers)}")
        return self

    def capacity_for(self, route: str) -> list[Capacity]:
        """The capacities whose endpoints cover ``route``."""
        return [c for c in self.capacity if any(route_matches(p, route) for p in c.endpoints)]

    def endpoint_for(self, route: str) -> Endpoint | None:
        """The first endpoint entry whose pattern matches ``route``."""
        for endpoint in self.endpoints:
            if route_matches(endpoint.route, route):
                return endpoint
        return None


def with_tier_shares(capacity: object, given: dict[str, dict[str, float]]) -> object:
    """``capacity`` (a Capacity or its mapping) with the tiers in ``given`` (tier -> capacity name ->
    share) holding exactly the shares they name of it; other tiers' shares as they were."""
    fields = capacity.model_dump() if isinstance(capacity, Capacity) else capacity
    if not isinstance(fields, dict) or not isinstance(fields.get("shares", {}), dict):
        return capacity  # malformed: its own validation says how
    name = fields.get("name")
    shares = {t: s for t, s in fields.get("shares", {}).items() if t not in given}
    shares.update({t: s[name] for t, s in given.items() if name in s})
    return {**fields, "shares": shares}
