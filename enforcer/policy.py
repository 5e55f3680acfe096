"""The policy model: tiers of rules, quotas and endpoint settings, validated by pydantic."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PositiveInt, field_validator, model_validator

from .durations import parse_duration

__all__ = ["Algorithm", "Scope", "Rule", "Quotas", "Tier", "Endpoint", "Policy", "parse_route_pattern", "route_matches"]

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
    its API key, else its user id, else its IP address."""

    client = "client"
    key = "key"
    user = "user"
    ip = "ip"
    endpoint = "endpoint"


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


class Rule(_Model):
    """One limit: ``limit`` units per ``period`` counted per ``scope`` with ``algorithm``."""

    name: str = Field(pattern=_NAME)
    algorithm: Algorithm = Algorithm.sliding_window_counter
    limit: PositiveInt = Field(description="units allowed per period (in-flight requests for concurrency)")
    period: Seconds = Field(description="window length; the lease timeout for concurrency")
    burst: PositiveInt | None = Field(default=None, description="bucket capacity (token_bucket, gcra); default: limit")
    scope: list[Scope] = Field(default_factory=lambda: [Scope.client], min_length=1)
    endpoints: list[Route] | None = Field(default=None, description="only on these routes; default: all")

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
        return self

    @property
    def capacity(self) -> int:
        """The most units one request may cost and still be admitted."""
        return self.burst or self.limit

    def applies_to(self, route: str) -> bool:
        return self.endpoints is None or any(route_matches(p, route) for p in self.endpoints)


class Quotas(_Model):
    """Calendar quotas (UTC), counted in cost units of admitted requests only."""

    daily: PositiveInt | None = None
    monthly: PositiveInt | None = None
    billing_anchor_day: int | None = Field(
        default=None, ge=1, le=31, description="monthly quota resets on this day (clamped to month length)"
    )


class Tier(_Model):
    """A named plan: its rules, its quotas and what to do when Redis is away."""

    rules: list[Rule] = Field(default_factory=list)
    quotas: Quotas = Field(default_factory=Quotas)
    fail_mode: Literal["open", "closed"] = "open"

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
    rules: list[Rule] = Field(default_factory=list)


class Policy(_Model):
    """The whole policy: tiers, which tier anonymous and keyed callers get, endpoint settings."""

    version: Literal[1] = 1
    tiers: dict[str, Tier]
    default_tier: str = Field(default="free", description="tier of an API key or user with none of its own")
    anonymous_tier: str = Field(default="anonymous", description="tier of callers with no key and no user")
    endpoints: list[Endpoint] = Field(default_factory=list)

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
        return self

    def endpoint_for(self, route: str) -> Endpoint | None:
        """The first endpoint entry whose pattern matches ``route``."""
        for endpoint in self.endpoints:
            if route_matches(endpoint.route, route):
                return endpoint
        return None
