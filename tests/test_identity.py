"""Client identity: trusted proxies only, IPv6 grouping, bounded identities, bearer tokens."""

from __future__ import annotations

from ratewarden.enforcer.identity import ClientIPResolver, bearer_token, bounded


def test_without_trusted_proxies_the_socket_peer_is_the_client() -> None:
    resolver = ClientIPResolver()
    assert resolver.resolve("203.0.113.9", x_forwarded_for="1.1.1.1") == "203.0.113.9"


def test_forwarded_headers_count_only_through_trusted_proxies() -> None:
    resolver = ClientIPResolver(["10.0.0.0/8"])
    # peer is a trusted proxy: the nearest untrusted hop is the client, whatever the client prepended
    assert resolver.resolve("10.0.0.2", x_forwarded_for="6.6.6.6, 198.51.100.7, 10.0.0.9") == "198.51.100.7"
    # peer is not trusted: its headers are ignored
    assert resolver.resolve("198.51.100.7", x_forwarded_for="6.6.6.6") == "198.51.100.7"
    # garbage from an untrusted party stops the walk at the last trusted hop
    assert resolver.resolve("10.0.0.2", x_forwarded_for="not-an-ip") == "10.0.0.2"


def test_rfc7239_forwarded_header() -> None:
    resolver = ClientIPResolver(["10.0.0.0/8"])
    header = 'for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711"'
    assert resolver.resolve("10.1.1.1", forwarded=header) == "2001:db8:cafe::/64"


def test_ipv6_clients_grouped_by_prefix_and_mapped_v4_unwrapped() -> None:
    resolver = ClientIPResolver(ipv6_prefix=64)
    assert resolver.resolve("2001:db8:1:2:aaaa::1") == resolver.resolve("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert resolver.resolve("::ffff:192.0.2.1") == "192.0.2.1"
    assert resolver.resolve("garbage") == "unknown"
    assert resolver.resolve(None) == "unknown"


def test_long_or_odd_identities_are_hashed() -> None:
    assert bounded("alice") == "alice"
    long = "x" * 10_000
    assert bounded(long).startswith("h:") and len(bounded(long)) == 34
    assert bounded("a{tag}").startswith("h:")  # would change the Redis hash tag
    assert bounded("line\nbreak").startswith("h:")


def test_bearer_tokens() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer   abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer ") is None
