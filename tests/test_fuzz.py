"""Property-based tests over hostile input: the policy loader only ever raises its own error,
header parsing never raises and never lets an untrusted hop pick the client IP, every
malformed event goes to the dead letters, and identities stay bounded."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratewarden.analytics.migrations import migrate
from ratewarden.enforcer.events import RequestEvent, encode_event
from ratewarden.enforcer.identity import MAX_IDENTITY_LENGTH, ClientIPResolver, bearer_token, bounded
from ratewarden.enforcer.loader import PolicyError, load_policy, policy_from_mapping
from ratewarden.stream.processor import RequestProcessor
from ratewarden.stream.settings import StreamSettings

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25)
POLICY_KEYS = st.sampled_from(["tiers", "rules", "name", "limit", "period", "algorithm", "scope", "burst", "quotas",
                               "daily", "monthly", "endpoints", "route", "cost", "exempt", "fail_mode",
                               "anonymous_tier", "default_tier", "billing_anchor_day", "version"])
POLICYISH = st.recursive(
    st.none() | st.integers(-5, 10**6) | st.sampled_from(["1m", "free", "gcra", "ip", "GET /x", "", "-1s", "open"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(POLICY_KEYS, inner, max_size=5), max_leaves=30)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(document=JSONISH | POLICYISH)
def test_the_policy_loader_raises_only_its_own_error(document: Any) -> None:
    try:
        policy_from_mapping(document, "fuzz.yaml")
    except PolicyError as exc:
        assert "fuzz.yaml" in str(exc)


@FUZZ
@given(text=st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_any_policy_file_text_loads_or_is_a_policy_error(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        load_policy(path)
    except PolicyError:
        pass


HOP = st.one_of(st.ip_addresses().map(str), st.text(max_size=30), st.sampled_from(["unknown", "[::1]:80", "1.2.3.4:5"]))
TRUSTED = ["10.0.0.0/8", "fd00::/8"]


@FUZZ
@given(peer=st.one_of(st.none(), HOP), xff=st.one_of(st.none(), st.lists(HOP, max_size=6).map(", ".join)),
       forwarded=st.one_of(st.none(), st.text(max_size=80)), header=st.text(max_size=60))
def test_header_parsing_never_raises(peer: str | None, xff: str | None, forwarded: str | None, header: str) -> None:
    for resolver in (ClientIPResolver(), ClientIPResolver(TRUSTED)):
        assert isinstance(resolver.resolve(peer, xff, forwarded), str)
    bearer_token(header)


@FUZZ
@given(chosen=st.lists(HOP, max_size=6), real=st.ip_addresses(v=4).filter(lambda ip: not ip.is_private),
       untrusted_peer=st.ip_addresses(v=4).filter(lambda ip: ip not in ipaddress.ip_network("10.0.0.0/8")))
def test_an_untrusted_hop_cannot_choose_the_client_ip(chosen: list[str], real: Any, untrusted_peer: Any) -> None:
    resolver = ClientIPResolver(TRUSTED)
    # through a trusted proxy: the nearest untrusted hop is the client, whatever lies left of it
    xff = ", ".join([*chosen, str(real)])
    assert resolver.resolve("10.1.2.3", xff) == str(real)
    assert resolver.resolve("10.1.2.3", None, ", ".join(f"for={h}" for h in [*chosen, str(real)])) == str(real)
    # from an untrusted peer, the headers are not read at all
    forwarded = f"for={chosen[0] if chosen else '1.1.1.1'}"
    assert resolver.resolve(str(untrusted_peer), xff, forwarded) == str(untrusted_peer)


@FUZZ
@given(value=st.text(max_size=2000))
def test_identities_are_bounded_whatever_the_client_sends(value: str) -> None:
    out = bounded(value)
    assert len(out) <= max(MAX_IDENTITY_LENGTH, 34) and out.isprintable() and "{" not in out and "}" not in out
    if len(value) > MAX_IDENTITY_LENGTH:
        assert out.startswith("h:") and value not in out


@dataclass
class _Record:  # what aiokafka hands the processor: pure data
    value: bytes
    offset: int
    key: bytes | None = b"k"
    timestamp: int = 0


GOOD = json.loads(encode_event(RequestEvent(
    event_id="e", decided_at_us=1_900_000_000_000_000, host_time_us=1_900_000_000_000_000, service="s", instance="i",
    client_id="ip:1.2.3.4", ip="1.2.3.4", tier="free", method="GET", route="GET /x", path="/x", cost=1, allowed=True,
    remaining=1, retry_after_s=0.0, degraded=False, local=False, status=200, latency_ms=1.0)))


OPTIONAL = {"schema", "key_id", "user", "user_agent", "rule", "kind", "shadow_denied"}


def _malformed() -> st.SearchStrategy[bytes]:
    """Records that are not valid events: noise, a required field missing, a field of the wrong type."""
    missing = st.sampled_from(sorted(set(GOOD) - OPTIONAL)).map(lambda f: {k: v for k, v in GOOD.items() if k != f})
    wrong = st.tuples(st.sampled_from(sorted(GOOD)), st.sampled_from([[1, 2], {"nested": True}])).map(
        lambda fv: {**GOOD, fv[0]: fv[1]})
    return st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                     (missing | wrong).map(lambda d: json.dumps(d).encode()))


@pytest.fixture(scope="module")
def processor(clickhouse: Any) -> RequestProcessor:
    migrate(clickhouse, db="rw_fuzz")
    settings_ = StreamSettings(clickhouse_database="rw_fuzz", kafka_topic="fuzz")
    proc = RequestProcessor(settings_, clickhouse, producer=None)  # type: ignore[arg-type]
    asyncio.run(proc.assigned([0]))
    return proc


@FUZZ
@given(values=st.lists(_malformed(), min_size=1, max_size=20))
def test_every_malformed_event_goes_to_the_dead_letters(processor: RequestProcessor, values: list[bytes]) -> None:
    processor._dead_letters.clear()
    first = processor.stats.events
    processor.handle(0, [_Record(value, first + i) for i, value in enumerate(values)])  # never raises
    assert [value for _, value, _, _, _ in processor._dead_letters] == values
    assert all(reason for _, _, reason, _, _ in processor._dead_letters)
    assert processor.stats.events - first == len(values)


def test_a_valid_event_is_not_dead_lettered(processor: RequestProcessor, tmp_path: Path) -> None:
    processor._dead_letters.clear()
    processor.handle(0, [_Record(json.dumps(GOOD).encode(), 10**9)])
    assert processor._dead_letters == []
