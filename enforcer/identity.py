"""Who is calling: client IP (through trusted proxies only), API key, user, tier."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Identity", "ClientIPResolver", "bearer_token", "bounded"]

MAX_IDENTITY_LENGTH = 128
_MAX_CACHED_PEERS = 50_000

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def bounded(value: str, max_length: int = MAX_IDENTITY_LENGTH) -> str:
    """``value`` itself if short and printable, else a fixed-length hash of it.

    Keeps Redis key names bounded whatever a client sends.
    """
    if len(value) <= max_length and value.isprintable() and "{" not in value and "}" not in value:
        return value
    return "h:" + hashlib.blake2b(value.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


@dataclass(slots=True)
class Identity:
    """The caller of one request. ``client_id`` is its primary identity and quota owner."""

    client_id: str
    tier: str
    ip: str
    key_id: str | None = None
    user: str | None = None
    owner: str | None = None
    custom: str | None = None  # the route's key function's value (the ``custom`` scope)

    def set_custom(self, value: object) -> None:
        """Key the ``custom`` scope by what a route's key function returned (None or empty: the client)."""
        self.custom = bounded(str(value)) if value else None


def bearer_token(value: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value, else None."""
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip().strip('"')
    if text.startswith("["):  # [v6]:port
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _forwarded_for(header: str) -> list[str]:
    """The ``for=`` values of an RFC 7239 ``Forwarded`` header, in order."""
    hops = []
    for element in header.split(","):
        for pair in element.split(";"):
            name, _, value = pair.strip().partition("=")
            if name.lower() == "for":
                hops.append(value)
    return hops


class ClientIPResolver:
    """Finds the client IP: the socket peer, or, only when the peer is a trusted proxy,
    the nearest untrusted hop of X-Forwarded-For / Forwarded (read right to left).

    IPv6 addresses are grouped by ``ipv6_prefix`` so a client rotating through its
    /64 stays one client.
    """

    def __init__(self, trusted_proxies: Iterable[str] = (), ipv6_prefix: int = 64) -> None:
        self.trusted: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(p, strict=False) for p in trusted_proxies)
        self.ipv6_prefix = ipv6_prefix
        self._peers: dict[str, str] = {}  # socket peer -> client IP, when no proxy is trusted

    def _is_trusted(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(ip in net for net in self.trusted)

    def normalise(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
        if ip.version == 6:
            if ip.ipv4_mapped:
                return str(ip.ipv4_mapped)
            return str(ipaddress.ip_network(f"{ip}/{self.ipv6_prefix}", strict=False))
        return str(ip)

    def resolve(self, peer: str | None, x_forwarded_for: str | None = None, forwarded: str | None = None) -> str:
        """The client IP for a request from ``peer`` carrying these headers. Never raises."""
        if not self.trusted and peer:
            client = self._peers.get(peer)
            if client is None:
                if len(self._peers) >= _MAX_CACHED_PEERS:
                    self._peers.clear()
                parsed = _parse_ip(peer)
                client = self._peers[peer] = self.normalise(parsed) if parsed else "unknown"
            return client
        peer_ip = _parse_ip(peer) if peer else None
        if peer_ip is None:
            return "unknown"
        if not self.trusted or not self._is_trusted(peer_ip):
            return self.normalise(peer_ip)
        if forwarded:
            hops = _forwarded_for(forwarded)
        elif x_forwarded_for:
            hops = x_forwarded_for.split(",")
        else:
            hops = []
        client_ip = peer_ip
        for hop in reversed(hops[-32:]):
            ip = _parse_ip(hop)
            if ip is None:
                break  # garbage written by an untrusted party: keep the last trusted hop's view
            client_ip = ip
            if not self._is_trusted(ip):
                break
        return self.normalise(client_ip)
