"""Per-client and per-endpoint summaries of time windows, built from request events (pure, no I/O).

A :class:`WindowAccumulator` keeps windows of one shape: tumbling (``hop_s == window_s``)
or hopping (each event lands in ``window_s / hop_s`` overlapping windows). Closed windows
become compact :class:`ClientSummary` / :class:`EndpointSummary` records: counts and
distinct counts, no raw sets, small enough to travel on a Kafka topic to the detectors.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from functools import lru_cache

import msgspec

from ratewarden.enforcer.events import RequestEvent

__all__ = ["ClientWindow", "EndpointWindow", "IpWindow", "Window", "ClientSummary", "EndpointSummary", "IpSummary",
           "Summary", "WindowAccumulator",
           "network_of", "status_class", "encode_summary", "decode_summary", "summary_key"]

_TRAILING_ID = re.compile(r"/(\d{1,12})/?$")
_MAX_TRACKED = 5_000  # distinct values kept per set: enough for every threshold, bounded memory
_STATUS_CLASS = {code: f"{code // 100}xx" for code in range(100, 600)}


def status_class(status: int) -> str:
    """``"2xx"`` for 200..299 and so on (a table lookup: this runs for every event)."""
    return _STATUS_CLASS.get(status) or f"{status // 100}xx"


@lru_cache(maxsize=65_536)
def network_of(ip: str) -> str:
    """The /24 (IPv4) or the address itself (already grouped IPv6) a client IP belongs to."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    return str(ipaddress.ip_network(f"{address}/24", strict=False)) if address.version == 4 else ip


def _add(values: set, value: object) -> None:
    if len(values) < _MAX_TRACKED:
        values.add(value)


class ClientSummary(msgspec.Struct, kw_only=True, frozen=True, tag="client"):
    """What one client did in one closed window: the detectors' input."""

    client_id: str
    tier: str
    window_start: float
    window_s: float
    requests: int
    admitted: int
    denied: int
    cost: int
    status_classes: dict[str, int]
    not_found: int
    auth_failures: int  # 401/403 on auth routes
    auth_attempts: int
    early_retries: int  # requests sent while an earlier denial's Retry-After was still running
    latency_sum_ms: float
    distinct_routes: int
    distinct_paths: int
    distinct_ips: int
    distinct_networks: int
    id_requests: int  # requests whose path ends in a numeric id
    sequential_steps: int  # of those, how many asked for the previous id + 1

    @property
    def scale(self) -> float:
        """The window's length in minutes: count thresholds are per minute and scale with it."""
        return self.window_s / 60.0

    @property
    def denied_ratio(self) -> float:
        return self.denied / self.requests if self.requests else 0.0

    @property
    def not_found_ratio(self) -> float:
        return self.not_found / self.requests if self.requests else 0.0

    @property
    def sequential_ratio(self) -> float:
        """Share of id requests that asked for the previous id + 1 (1.0 when walking 1, 2, 3, ...;
        about 1/N for random access over N ids)."""
        return self.sequential_steps / (self.id_requests - 1) if self.id_requests > 1 else 0.0


class IpSummary(msgspec.Struct, kw_only=True, frozen=True, tag="ip"):
    """The API keys one IP address used in one closed window."""

    ip: str
    window_start: float
    window_s: float
    requests: int
    distinct_keys: int

    @property
    def scale(self) -> float:
        return self.window_s / 60.0


class EndpointSummary(msgspec.Struct, kw_only=True, frozen=True, tag="endpoint"):
    """Authentication failures on one route in one closed window, across clients."""

    route: str
    window_start: float
    window_s: float
    failures: int
    distinct_ips: int

    @property
    def scale(self) -> float:
        return self.window_s / 60.0


Summary = ClientSummary | EndpointSummary | IpSummary
_summary_encoder = msgspec.json.Encoder()
_summary_decoder = msgspec.json.Decoder(Summary)


def summary_key(summary: Summary) -> str:
    """What a summary is about: its Kafka key, and its key in the detectors' state."""
    if isinstance(summary, ClientSummary):
        return summary.client_id
    if isinstance(summary, EndpointSummary):
        return f"route:{summary.route}"
    return f"ip-keys:{summary.ip}"


def encode_summary(summary: Summary) -> bytes:
    return _summary_encoder.encode(summary)


def decode_summary(data: bytes) -> Summary:
    return _summary_decoder.decode(data)


@dataclass
class ClientWindow:
    """What one client did in one open window (mutable, with the distinct sets)."""

    client_id: str
    tier: str
    window_start: float
    window_s: float
    first_offset: int | None = None  # the earliest source offset folded in (replay starts there)
    requests: int = 0
    admitted: int = 0
    denied: int = 0
    cost: int = 0
    status_classes: dict[str, int] = field(default_factory=dict)
    not_found: int = 0
    auth_failures: int = 0
    auth_attempts: int = 0
    early_retries: int = 0
    latency_sum_ms: float = 0.0
    routes: set[str] = field(default_factory=set)
    paths: set[str] = field(default_factory=set)
    ips: set[str] = field(default_factory=set)
    networks: set[str] = field(default_factory=set)
    id_requests: int = 0
    sequential_steps: int = 0
    last_id: int | None = None

    def summary(self) -> ClientSummary:
        return ClientSummary(
            client_id=self.client_id, tier=self.tier, window_start=self.window_start, window_s=self.window_s,
            requests=self.requests, admitted=self.admitted, denied=self.denied, cost=self.cost,
            status_classes=dict(self.status_classes), not_found=self.not_found, auth_failures=self.auth_failures,
            auth_attempts=self.auth_attempts, early_retries=self.early_retries,
            latency_sum_ms=round(self.latency_sum_ms, 3), distinct_routes=len(self.routes),
            distinct_paths=len(self.paths), distinct_ips=len(self.ips), distinct_networks=len(self.networks),
            id_requests=self.id_requests, sequential_steps=self.sequential_steps)


@dataclass
class EndpointWindow:
    """Authentication failures on one route in one open window, across clients."""

    route: str
    window_start: float
    window_s: float
    first_offset: int | None = None
    failures: int = 0
    ips: set[str] = field(default_factory=set)

    def summary(self) -> EndpointSummary:
        return EndpointSummary(route=self.route, window_start=self.window_start, window_s=self.window_s,
                               failures=self.failures, distinct_ips=len(self.ips))


@dataclass
class IpWindow:
    """The API keys one IP address used in one open window."""

    ip: str
    window_start: float
    window_s: float
    first_offset: int | None = None
    requests: int = 0
    keys: set[str] = field(default_factory=set)

    def summary(self) -> IpSummary:
        return IpSummary(ip=self.ip, window_start=self.window_start, window_s=self.window_s,
                         requests=self.requests, distinct_keys=len(self.keys))


Window = ClientWindow | EndpointWindow | IpWindow


class WindowAccumulator:
    """Folds events into per-client, per-auth-endpoint and per-IP (keys used) windows of ``window_s`` seconds,
    starting every ``hop_s`` seconds (tumbling when ``hop_s`` is ``window_s``, the default)."""

    def __init__(self, window_s: float = 60.0, auth_routes: tuple[str, ...] = ("POST /v1/login",),
                 hop_s: float | None = None) -> None:
        hop_s = hop_s or window_s
        if window_s <= 0 or hop_s <= 0 or window_s % hop_s:
            raise ValueError(f"window_s ({window_s}) must be a positive multiple of hop_s ({hop_s})")
        self.window_s = window_s
        self.hop_s = hop_s
        self.auth_routes = set(auth_routes)
        self.clients: dict[tuple[str, float], ClientWindow] = {}
        self.endpoints: dict[tuple[str, float], EndpointWindow] = {}
        self.ips: dict[tuple[str, float], IpWindow] = {}  # keyed requests only
        self._retry_at: dict[str, int] = {}

    def starts_of(self, event: RequestEvent) -> list[float]:
        """Start times of every window the event falls in."""
        seconds = event.decided_at_us / 1_000_000
        last = seconds - seconds % self.hop_s
        count = int(self.window_s // self.hop_s)
        return [last - i * self.hop_s for i in range(count)]

    def add(self, event: RequestEvent, offset: int | None = None) -> None:
        client_id = event.client_id
        early = self._retry_at.get(client_id, 0) > event.decided_at_us
        if not event.allowed and event.retry_after_s > 0:
            self._retry_at[client_id] = event.decided_at_us + int(event.retry_after_s * 1_000_000)
        # what the event says, worked out once for every window it lands in
        status = event.status
        klass = status_class(status)
        match = _TRAILING_ID.search(event.path)
        item = int(match.group(1)) if match else None
        auth = event.route in self.auth_routes and event.allowed
        failed_auth = auth and status in (401, 403)
        network = network_of(event.ip)
        key_id = event.key_id
        for start in self.starts_of(event):
            if key_id is not None:
                self._add_key_for_ip(event.ip, key_id, start, offset)
            key = (client_id, start)
            w = self.clients.get(key)
            if w is None:
                w = self.clients[key] = ClientWindow(client_id, event.tier, start, self.window_s, offset)
            w.requests += 1
            w.cost += event.cost
            if event.allowed:
                w.admitted += 1
            else:
                w.denied += 1
            if early:
                w.early_retries += 1
            w.status_classes[klass] = w.status_classes.get(klass, 0) + 1
            w.latency_sum_ms += event.latency_ms
            if status == 404:
                w.not_found += 1
            if len(w.paths) < _MAX_TRACKED:
                w.paths.add(event.path)
            if len(w.ips) < _MAX_TRACKED:
                w.ips.add(event.ip)
            w.routes.add(event.route)  # route templates: a bounded set by construction
            if len(w.networks) < _MAX_TRACKED:
                w.networks.add(network)
            if item is not None:
                if w.last_id is not None and item == w.last_id + 1:
                    w.sequential_steps += 1
                w.last_id = item
                w.id_requests += 1
            if auth:
                w.auth_attempts += 1
                if failed_auth:
                    w.auth_failures += 1
                    self._add_auth_failure(event, start, offset)

    def _add_key_for_ip(self, ip: str, key_id: str, start: float, offset: int | None) -> None:
        ipkey = (ip, start)
        window = self.ips.get(ipkey)
        if window is None:
            window = self.ips[ipkey] = IpWindow(ip, start, self.window_s, offset)
        window.requests += 1
        _add(window.keys, key_id)

    def _add_auth_failure(self, event: RequestEvent, start: float, offset: int | None) -> None:
        ekey = (event.route, start)
        endpoint = self.endpoints.get(ekey)
        if endpoint is None:
            endpoint = self.endpoints[ekey] = EndpointWindow(event.route, start, self.window_s, offset)
        endpoint.failures += 1
        _add(endpoint.ips, event.ip)

    def close_before(self, start: float) -> list[Window]:
        """Remove and return every window that began before ``start``."""
        closed: list[Window] = []
        for name in ("clients", "endpoints", "ips"):
            windows = getattr(self, name)
            closed += [w for k, w in windows.items() if k[1] < start]
            setattr(self, name, {k: w for k, w in windows.items() if k[1] >= start})
        return closed

    def close_ended_by(self, watermark_s: float) -> list[Window]:
        """Remove and return every window that ended at or before ``watermark_s``."""
        closed = self.close_before(watermark_s - self.window_s + 1e-9)
        watermark_us = watermark_s * 1_000_000
        self._retry_at = {client: at for client, at in self._retry_at.items() if at > watermark_us}
        return closed

    def close_all(self) -> list[Window]:
        return self.close_before(float("inf"))

    def first_open_offset(self) -> int | None:
        """The earliest source offset an open window holds (None when none holds one)."""
        offsets = [w.first_offset for w in self.clients.values() if w.first_offset is not None]
        offsets += [w.first_offset for w in self.endpoints.values() if w.first_offset is not None]
        offsets += [w.first_offset for w in self.ips.values() if w.first_offset is not None]
        return min(offsets) if offsets else None
