"""Per-client summaries of one time window, built from request events (pure, no I/O)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from enforcer.events import RequestEvent

__all__ = ["ClientWindow", "EndpointWindow", "WindowAccumulator", "network_of"]

_TRAILING_ID = re.compile(r"/(\d{1,12})/?$")
_MAX_TRACKED = 5_000  # distinct values kept per set: enough for every threshold, bounded memory


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


@dataclass
class ClientWindow:
    """What one client did in one window."""

    client_id: str
    tier: str
    window_start: float
    requests: int = 0
    admitted: int = 0
    denied: int = 0
    cost: int = 0
    status_classes: dict[str, int] = field(default_factory=dict)
    not_found: int = 0
    auth_failures: int = 0  # 401/403 on auth routes
    auth_attempts: int = 0
    early_retries: int = 0  # requests sent while an earlier denial's Retry-After was still running
    latency_sum_ms: float = 0.0
    routes: set[str] = field(default_factory=set)
    paths: set[str] = field(default_factory=set)
    ips: set[str] = field(default_factory=set)
    networks: set[str] = field(default_factory=set)
    id_requests: int = 0  # requests whose path ends in a numeric id
    sequential_steps: int = 0  # of those, how many asked for the previous id + 1
    last_id: int | None = None

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


@dataclass
class EndpointWindow:
    """Authentication failures on one route in one window, across clients."""

    route: str
    window_start: float
    failures: int = 0
    ips: set[str] = field(default_factory=set)


class WindowAccumulator:
    """Folds events into per-client and per-auth-endpoint windows of ``window_s`` seconds."""

    def __init__(self, window_s: float = 60.0, auth_routes: tuple[str, ...] = ("POST /v1/login",)) -> None:
        self.window_s = window_s
        self.auth_routes = set(auth_routes)
        self.clients: dict[tuple[str, float], ClientWindow] = {}
        self.endpoints: dict[tuple[str, float], EndpointWindow] = {}
        self._retry_at: dict[str, int] = {}

    def window_of(self, event: RequestEvent) -> float:
        seconds = event.decided_at_us / 1_000_000
        return seconds - seconds % self.window_s

    def add(self, event: RequestEvent) -> ClientWindow:
        start = self.window_of(event)
        key = (event.client_id, start)
        window = self.clients.get(key)
        if window is None:
            window = self.clients[key] = ClientWindow(event.client_id, event.tier, start)
        window.requests += 1
        window.cost += event.cost
        if event.allowed:
            window.admitted += 1
        else:
            window.denied += 1
        if self._retry_at.get(event.client_id, 0) > event.decided_at_us:
            window.early_retries += 1
        if not event.allowed and event.retry_after_s > 0:
            self._retry_at[event.client_id] = event.decided_at_us + int(event.retry_after_s * 1_000_000)
        status_class = f"{event.status // 100}xx"
        window.status_classes[status_class] = window.status_classes.get(status_class, 0) + 1
        window.latency_sum_ms += event.latency_ms
        if event.status == 404:
            window.not_found += 1
        _add(window.routes, event.route)
        _add(window.paths, event.path)
        _add(window.ips, event.ip)
        _add(window.networks, network_of(event.ip))
        match = _TRAILING_ID.search(event.path)
        if match:
            item = int(match.group(1))
            if window.last_id is not None and item == window.last_id + 1:
                window.sequential_steps += 1
            window.last_id = item
            window.id_requests += 1
        if event.route in self.auth_routes and event.allowed:
            window.auth_attempts += 1
            if event.status in (401, 403):
                window.auth_failures += 1
                ekey = (event.route, start)
                endpoint = self.endpoints.get(ekey)
                if endpoint is None:
                    endpoint = self.endpoints[ekey] = EndpointWindow(event.route, start)
                endpoint.failures += 1
                _add(endpoint.ips, event.ip)
        return window

    def close_before(self, start: float) -> tuple[list[ClientWindow], list[EndpointWindow]]:
        """Remove and return every window that began before ``start``."""
        clients = [w for k, w in self.clients.items() if k[1] < start]
        endpoints = [w for k, w in self.endpoints.items() if k[1] < start]
        self.clients = {k: w for k, w in self.clients.items() if k[1] >= start}
        self.endpoints = {k: w for k, w in self.endpoints.items() if k[1] >= start}
        return clients, endpoints
