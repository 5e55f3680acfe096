"""Abuse detectors: small pure classes over window summaries, each with documented,
configurable thresholds and its evidence in the alert it raises.

Thresholds default to values that leave legitimate heavy users alone: a paid client at
steady high volume is not denied most of the time, does not fail logins, does not walk
sequential ids into 404s and does not come from dozens of networks.

Adding a detector is one :class:`Detector` subclass plus one field of
:class:`~ratewarden.stream.settings.DetectorSettings` holding it: :func:`registered` finds it
there, the worker runs it over the summaries of its ``summary_type`` and, if it is
``stateful``, gives it a table of its own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from .windows import ClientSummary, EndpointSummary, IpSummary, Summary

__all__ = [
    "Alert", "Detector", "RetryStormDetector", "CredentialStuffingDetector", "ScrapingDetector", "KeySharingDetector",
    "SpikeDetector", "EndpointStuffingDetector", "KeyCyclingDetector", "registered",
]


@dataclass
class Alert:
    """One finding about one client (or one endpoint) in one window."""

    alert_type: str
    severity: str  # info | warning | critical
    client_id: str
    window_start: float
    evidence: dict[str, Any]
    suggested_action: str

    @property
    def dedup_key(self) -> str:
        return f"{self.alert_type}:{self.client_id}"


S = TypeVar("S", ClientSummary, EndpointSummary, IpSummary)


class Detector(ABC, Generic[S]):
    """A detector: checks one kind of window summary, returning the alert it raises or None.

    Subclasses are dataclasses whose fields are their thresholds (settings), and name the alert
    type they raise and the summary type they read. A ``stateful`` one keeps what it learns in
    ``state`` (keyed as it likes, e.g. by client; entries untouched for
    ``RATEWARDEN_STATE_TTL_S`` are dropped) and sees only full usage windows (every one of them);
    the others get an empty mapping and also see the short windows they would flag.
    """

    alert_type: ClassVar[str]
    summary_type: ClassVar[type[Summary]]
    stateful: ClassVar[bool] = False

    @abstractmethod
    def check(self, w: S, state: MutableMapping[str, Any], /) -> Alert | None:
        """The alert window ``w`` raises, or None; ``state`` is this detector's own (empty unless stateful)."""


def registered(detectors: BaseModel) -> list[Detector[Any]]:
    """Every detector among the fields of ``detectors`` (a ``DetectorSettings``), in field order."""
    found = [getattr(detectors, name) for name in type(detectors).model_fields]
    return [detector for detector in found if isinstance(detector, Detector)]


def at_least(threshold: float, scale: float, floor: float) -> float:
    """A per-minute count threshold for a window ``scale`` minutes long, never below ``floor``
    (a few events in a very short window prove nothing)."""
    return max(floor, threshold * scale)


@dataclass
class RetryStormDetector(Detector[ClientSummary]):
    """Retry storm / limit abuse: denied most of the time and retrying before Retry-After."""

    min_requests: int = 30
    min_denied_ratio: float = 0.7
    min_early_retry_ratio: float = 0.5
    alert_type: ClassVar[str] = "retry_storm"
    summary_type: ClassVar[type[Summary]] = ClientSummary

    def check(self, w: ClientSummary, state: MutableMapping[str, Any], /) -> Alert | None:
        if w.requests < at_least(self.min_requests, w.scale, 5) or w.denied_ratio < self.min_denied_ratio:
            return None
        early = w.early_retries / w.requests
        if early < self.min_early_retry_ratio:
            return None
        return Alert(self.alert_type, "warning", w.client_id, w.window_start,
                     {"requests": w.requests, "denied": w.denied, "denied_ratio": round(w.denied_ratio, 3),
                      "early_retries": w.early_retries}, "throttle to the penalty tier; contact the client")


@dataclass
class CredentialStuffingDetector(Detector[ClientSummary]):
    """Brute force from one client: many failed logins on auth routes, few successes."""

    min_failures: int = 10
    min_failure_ratio: float = 0.8
    alert_type: ClassVar[str] = "credential_stuffing"
    summary_type: ClassVar[type[Summary]] = ClientSummary

    def check(self, w: ClientSummary, state: MutableMapping[str, Any], /) -> Alert | None:
        if w.auth_failures < at_least(self.min_failures, w.scale, 3) or w.auth_attempts == 0:
            return None
        ratio = w.auth_failures / w.auth_attempts
        if ratio < self.min_failure_ratio:
            return None
        return Alert(self.alert_type, "critical", w.client_id, w.window_start,
                     {"auth_failures": w.auth_failures, "auth_attempts": w.auth_attempts,
                      "failure_ratio": round(ratio, 3)}, "block the client for a while")


@dataclass
class EndpointStuffingDetector(Detector[EndpointSummary]):
    """Distributed credential stuffing: failures on one auth route from many IPs, each slow."""

    min_failures: int = 50
    min_ips: int = 20
    alert_type: ClassVar[str] = "credential_stuffing_distributed"
    summary_type: ClassVar[type[Summary]] = EndpointSummary

    def check(self, e: EndpointSummary, state: MutableMapping[str, Any], /) -> Alert | None:
        if e.failures < at_least(self.min_failures, e.scale, 10) or e.distinct_ips < at_least(self.min_ips, e.scale, 5):
            return None
        return Alert(self.alert_type, "critical", f"route:{e.route}", e.window_start,
                     {"failures": e.failures, "distinct_ips": e.distinct_ips},
                     "require a captcha or step-up auth on this route")


@dataclass
class ScrapingDetector(Detector[ClientSummary]):
    """Scraping / enumeration: many distinct resources each fetched about once (a sweep, where
    a heavy user revisits), and mostly misses or sequential ids."""

    min_distinct_paths: int = 40
    min_unique_ratio: float = 0.5  # distinct paths / requests
    min_not_found_ratio: float = 0.3
    min_sequential_ratio: float = 0.6
    alert_type: ClassVar[str] = "scraping"
    summary_type: ClassVar[type[Summary]] = ClientSummary

    def check(self, w: ClientSummary, state: MutableMapping[str, Any], /) -> Alert | None:
        if (w.distinct_paths < at_least(self.min_distinct_paths, w.scale, 10)
                or w.distinct_paths < self.min_unique_ratio * w.requests):
            return None
        if w.not_found_ratio < self.min_not_found_ratio and w.sequential_ratio < self.min_sequential_ratio:
            return None
        return Alert(self.alert_type, "warning", w.client_id, w.window_start,
                     {"distinct_paths": w.distinct_paths, "requests": w.requests,
                      "not_found_ratio": round(w.not_found_ratio, 3),
                      "sequential_ratio": round(w.sequential_ratio, 3)}, "throttle to the penalty tier")


@dataclass
class KeySharingDetector(Detector[ClientSummary]):
    """A shared or leaked API key: one key used from many IPs or networks."""

    min_ips: int = 20
    min_networks: int = 8
    alert_type: ClassVar[str] = "key_sharing"
    summary_type: ClassVar[type[Summary]] = ClientSummary

    def check(self, w: ClientSummary, state: MutableMapping[str, Any], /) -> Alert | None:
        if not w.client_id.startswith("k:"):
            return None
        if (w.distinct_ips < at_least(self.min_ips, w.scale, 5)
                and w.distinct_networks < at_least(self.min_networks, w.scale, 3)):
            return None
        return Alert(self.alert_type, "warning", w.client_id, w.window_start,
                     {"distinct_ips": w.distinct_ips, "distinct_networks": w.distinct_networks},
                     "rotate the key and tell its owner")


@dataclass
class KeyCyclingDetector(Detector[IpSummary]):
    """One IP address using many API keys: rotating keys to dodge per-key limits, or a
    stolen batch of keys tried from one place."""

    min_keys: int = 10
    alert_type: ClassVar[str] = "key_cycling"
    summary_type: ClassVar[type[Summary]] = IpSummary

    def check(self, w: IpSummary, state: MutableMapping[str, Any], /) -> Alert | None:
        if w.distinct_keys < at_least(self.min_keys, w.scale, 3):
            return None
        return Alert(self.alert_type, "warning", f"ip:{w.ip}", w.window_start,
                     {"distinct_keys": w.distinct_keys, "requests": w.requests},
                     "block the address; check the keys' owners")


@dataclass
class SpikeDetector(Detector[ClientSummary]):
    """A client far above its own baseline (EWMA of requests per usage window), above an absolute
    floor. Its state is each client's ``(baseline, windows seen)``."""

    factor: float = 5.0
    floor: int = 300  # requests per window below which nobody is flagged
    alpha: float = 0.3
    min_history: int = 3
    alert_type: ClassVar[str] = "traffic_spike"
    summary_type: ClassVar[type[Summary]] = ClientSummary
    stateful: ClassVar[bool] = True

    def check(self, w: ClientSummary, state: MutableMapping[str, Any], /) -> Alert | None:
        baseline, seen = state.get(w.client_id, (0.0, 0))
        alert = None
        if seen >= self.min_history and w.requests >= self.floor and w.requests > self.factor * max(baseline, 1.0):
            alert = Alert(self.alert_type, "info", w.client_id, w.window_start,
                          {"requests": w.requests, "baseline": round(baseline, 1), "factor": self.factor},
                          "check with the client; raise its tier if legitimate")
        updated = w.requests if seen == 0 else self.alpha * w.requests + (1 - self.alpha) * baseline
        state[w.client_id] = (updated, seen + 1)
        return alert
