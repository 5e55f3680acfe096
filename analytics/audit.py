"""The audit log of run-time changes made through the admin API: who, when, what (before/after).

Who is two things: the principal (verified: the admin token, an expiring token, or the name an
expiring token was issued to, see ``ratewarden admin-token --name``) and the actor (what the
``X-Ratewarden-Actor`` header says, e.g. the operator a shared console acts for; else the
principal).

Entries go to a Redis stream (``rw:{ctl}:audit``) on the enforcers' Redis, capped at about
``audit_max_entries`` (the oldest dropped first), so the log lives beside what it describes and
needs no other store. Entries never hold a secret: keys appear as their records (id, prefix).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Annotated, Any, cast

import redis
from fastapi import APIRouter, Depends, Header, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from redis.cluster import RedisCluster

from .tokens import token_principal

__all__ = ["AUDIT_STREAM", "AuditEntry", "AuditLog", "Who", "audit_router"]

AUDIT_STREAM = "rw:{ctl}:audit"
ACTOR_HEADER = "X-Ratewarden-Actor"
_ACTOR = r"^[A-Za-z0-9_ .@:+-]{1,64}$"
_BEARER = HTTPBearer(auto_error=False)


@dataclass(frozen=True)
class Who:
    """Who made a change: ``principal`` is verified, ``actor`` is what the request says."""

    actor: str
    principal: str


class AuditEntry(BaseModel):
    """One change: who made it, when, to what, and the state before and after (None: absent)."""

    id: str = Field(description="the entry's stream id (newest sort last); pass as `before` to page back")
    at: float = Field(description="unix time of the change")
    actor: str = Field(description=f"who the request says acts: its {ACTOR_HEADER} header, else the principal")
    principal: str = Field(description="who its token is (verified): admin-token, expiring-token, or the name "
                                       "an expiring token was issued to; cli:<user> for the command line")
    action: str = Field(description="e.g. tier.put, tier.shadow, key.create, key.rotate, key.revoke, "
                                    "override.put, override.clear, recommendation.stage")
    target: str = Field(description="what changed: a tier name, key id or client id")
    before: Any = None
    after: Any = None


class AuditLog:
    """Append to and read the bounded audit stream; :meth:`who` is the dependency that names the
    caller of a route (``admin_token`` verifies tokens' names)."""

    def __init__(self, client: redis.Redis | RedisCluster, max_entries: int = 10_000,
                 admin_token: str | None = None) -> None:
        self.client = client
        self.max_entries = max_entries
        self.admin_token = admin_token

    def who(self, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
            x_ratewarden_actor: Annotated[str | None, Header(
                pattern=_ACTOR, description="who is acting (an operator's name, shown in the audit log); "
                "letters, digits, space and .@:+-_ up to 64 characters")] = None) -> Who:
        """The principal of the request's token and the actor it names (the routes are behind the
        token already: an unverifiable one is recorded as ``unknown``)."""
        principal = None
        if credentials is not None and self.admin_token is not None:
            principal = token_principal(credentials.credentials, self.admin_token)
        principal = principal or "unknown"
        stated = x_ratewarden_actor.strip() if x_ratewarden_actor else ""
        return Who(stated or principal, principal)

    def record(self, who: Who | str, action: str, target: str, before: Any = None, after: Any = None) -> None:
        """Append one change; ``who`` as a string is both actor and principal (e.g. ``cli:<user>``)."""
        who = who if isinstance(who, Who) else Who(who, who)
        fields = {"at": repr(time.time()), "actor": who.actor, "principal": who.principal, "action": action,
                  "target": target, "before": json.dumps(before, default=str), "after": json.dumps(after, default=str)}
        self.client.xadd(AUDIT_STREAM, fields, maxlen=self.max_entries, approximate=True)  # type: ignore[arg-type]

    def read(self, limit: int = 100, before: str | None = None, target: str | None = None,
             action: str | None = None) -> list[AuditEntry]:
        """Newest first: up to ``limit`` entries older than the id ``before``, for one target or
        action if given (filtered here: the log is bounded, so a scan is cheap)."""
        entries: list[AuditEntry] = []
        end = f"({before}" if before else "+"
        while len(entries) < limit:
            batch = cast("list[tuple[bytes, dict[bytes, bytes]]]",
                         self.client.xrevrange(AUDIT_STREAM, max=end, min="-", count=max(limit, 200)))
            if not batch:
                break
            for raw_id, raw in batch:
                entry = _entry(raw_id, raw)
                if (target is None or entry.target == target) and (action is None or entry.action == action):
                    entries.append(entry)
            end = f"({batch[-1][0].decode()}"
        return entries[:limit]


def _entry(raw_id: bytes, raw: dict[bytes, bytes]) -> AuditEntry:
    text = {k.decode(): v.decode() for k, v in raw.items()}
    return AuditEntry(id=raw_id.decode(), at=float(text["at"]), actor=text["actor"],
                      principal=text.get("principal", text["actor"]), action=text["action"],
                      target=text["target"], before=json.loads(text["before"]), after=json.loads(text["after"]))


def audit_router(log: AuditLog) -> APIRouter:
    """``GET /audit``: the audit log, newest first."""
    router = APIRouter(tags=["audit"])

    @router.get("/audit")
    def read_audit(limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                   before: Annotated[str | None, Query(pattern=r"^\d{1,20}-\d{1,20}$",
                                                      description="an entry id: only older entries")] = None,
                   target: Annotated[str | None, Query(max_length=200)] = None,
                   action: Annotated[str | None, Query(max_length=64)] = None) -> list[AuditEntry]:
        """Changes made through the admin API (tiers, keys, overrides, staged recommendations), newest first."""
        return log.read(limit, before, target, action)

    return router
