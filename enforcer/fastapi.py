"""FastAPI's own form of per-route limits: a dependency, per route or per ``APIRouter``::

    from fastapi import APIRouter, Depends
    from ratewarden.enforcer.fastapi import RateLimit

    router = APIRouter(prefix="/v1/reports", dependencies=[Depends(RateLimit("10/minute;100/hour"))])

    @app.get("/v1/export", dependencies=[Depends(RateLimit("2/minute", cost=5))])
    async def export(): ...

``RatewardenMiddleware`` finds these in a route's dependency tree when it first resolves the route
and decides once per request, in the same script call as the policy's rules: the dependency itself
only hands the decision to the handler (``decision: Decision = Depends(RateLimit(...))``).
"""

# no ``from __future__ import annotations``: FastAPI 0.115 (our floor) reads __call__'s annotations as
# objects, not strings it could resolve against this module, to know it wants the Request
from collections.abc import Iterable
from typing import Any

from ratewarden.extras import require

require("fastapi", "starlette", feature="ratewarden.enforcer.fastapi")

from starlette.requests import Request  # noqa: E402 - after the hint for a missing extra

from .decision import Decision  # noqa: E402
from .plan import KeyFunction  # noqa: E402
from .policy import Rule  # noqa: E402
from .route_limits import LIMITS_ATTR, ROUTE_SCOPE, route_limits  # noqa: E402

__all__ = ["RateLimit"]


class RateLimit:
    """Limits for the routes that depend on it; arguments as ``ratewarden.enforcer.asgi.limit``
    (rate strings such as ``"10/minute"``, mappings as in a policy file, rules; ``cost``,
    ``exempt``, ``key``, ``scope``). Rules that name no scope count per client and route, so one
    ``RateLimit`` on a router limits each of its routes on its own."""

    def __init__(self, *rules: Rule | str | dict[str, Any], cost: int | None = None, exempt: bool = False,
                 key: KeyFunction | None = None, scope: Iterable[str] = ROUTE_SCOPE) -> None:
        setattr(self, LIMITS_ATTR, route_limits(*rules, cost=cost, exempt=exempt, key=key, scope=scope))

    def __repr__(self) -> str:
        rules = getattr(self, LIMITS_ATTR).rules
        return f"RateLimit({', '.join(repr(rule.name) for rule in rules)})"

    async def __call__(self, request: Request) -> Decision | None:
        """The request's decision (None for an exempt route); a clear error if no middleware made one."""
        state = request.scope.get("state") or {}
        if "ratewarden" not in state:
            raise RuntimeError(f"{self!r} found no decision: add RatewardenMiddleware to the app "
                               "(app.add_middleware(RatewardenMiddleware, enforcer=...)), which applies it")
        decision: Decision | None = state["ratewarden"]
        return decision
