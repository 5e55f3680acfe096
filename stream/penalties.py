"""Penalties: a detector's finding becomes an expiring override in the enforcers' Redis.

Every enforcer honours an override within a second. The action per alert type is
configured (``alert`` only, ``throttle`` to the penalty rule, ``block``); exempt tiers
(``trusted`` by default) are never penalised, and an override an operator set is never
replaced by a penalty.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

import redis
from redis.cluster import RedisCluster

from ratewarden.analytics.client import ClickHouse
from ratewarden.enforcer.overrides import Override, OverrideStore
from ratewarden.enforcer.topology import parse_redis_url, sync_client

from .detectors import Alert
from .settings import StreamSettings

__all__ = ["Penalty", "PenaltyBox", "PENALTY_SOURCE_PREFIX", "write_penalties"]

PENALTY_SOURCE_PREFIX = "stream:"
PENALTY_COLUMNS = ["penalty_id", "client_id", "action", "tier", "detector", "reason", "created_at", "expires_at"]


@dataclass(frozen=True)
class Penalty:
    penalty_id: str
    client_id: str
    action: str  # throttle | block
    tier: str  # the client's tier when penalised
    detector: str
    reason: str
    created_at: float
    expires_at: float

    def row(self) -> list[object]:
        utc = dt.UTC
        return [self.penalty_id, self.client_id, self.action, self.tier, self.detector, self.reason,
                dt.datetime.fromtimestamp(self.created_at, utc), dt.datetime.fromtimestamp(self.expires_at, utc)]


class PenaltyBox:
    """Turns alerts into overrides (blocking I/O: call it from a thread).

    Without ``client``, one for ``settings.redis_url`` (a server, a cluster or a primary behind
    Sentinels) is made on the first penalty: a cluster client reads the slot map as it is made,
    and a cluster not formed yet when the worker starts must fail a penalty, not the worker.
    """

    def __init__(self, settings: StreamSettings, client: redis.Redis | RedisCluster | None = None) -> None:
        self.settings = settings
        self._topology = parse_redis_url(settings.redis_url) if client is None else None  # a bad URL fails now
        self._store = OverrideStore(client) if client is not None else None

    @property
    def store(self) -> OverrideStore:
        if self._store is None:
            assert self._topology is not None
            self._store = OverrideStore(sync_client(self._topology))
        return self._store

    def apply(self, alert: Alert, tier: str, now: float | None = None) -> Penalty | None:
        """Penalise ``alert``'s client as configured; None when the action is alert-only or exempt."""
        action = self.settings.penalties.get(alert.alert_type)
        if action is None or action.action == "alert" or tier in self.settings.penalty_exempt_tiers:
            return None
        if not alert.client_id.startswith(("k:", "u:", "ip:")):
            return None  # an endpoint-wide finding names no client to penalise
        existing = self.store.get(alert.client_id)
        if existing is not None and existing.active() and not existing.source.startswith(PENALTY_SOURCE_PREFIX):
            return None  # an operator's decision about this client stands
        now = time.time() if now is None else now
        expires_at = now + action.duration_s
        reason = f"{alert.alert_type}: {alert.suggested_action}"
        override = Override(
            client_id=alert.client_id, block=action.action == "block",
            rules=[self.settings.penalty_rule] if action.action == "throttle" else None,
            reason=reason[:500], source=f"{PENALTY_SOURCE_PREFIX}{alert.alert_type}", expires_at=expires_at)
        self.store.set(override)
        return Penalty(f"{alert.dedup_key}@{int(alert.window_start)}", alert.client_id, action.action, tier,
                       alert.alert_type, reason, now, expires_at)


def write_penalties(client: ClickHouse, penalties: list[Penalty], db: str = "ratewarden") -> None:
    if penalties:
        client.insert(f"{db}.penalties", [p.row() for p in penalties], column_names=PENALTY_COLUMNS)
