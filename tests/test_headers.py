"""Rate-limit headers from real decisions: what a client is told stays consistent."""

from __future__ import annotations

import re

import pytest

from ratewarden.enforcer.contract import ALGORITHMS
from ratewarden.enforcer.headers import rate_limit_headers

from .helpers import make_enforcer, one_rule_policy

pytestmark = pytest.mark.anyio
RATE_ALGORITHMS = sorted(name for name, spec in ALGORITHMS.items() if spec.kind != "quota")


def parsed(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {name.decode(): value.decode() for name, value in headers}


def member(value: str, name: str) -> dict[str, int]:
    """The parameters of the member ``name`` of a RateLimit or RateLimit-Policy value."""
    found = re.search(rf'"{re.escape(name)}"((?:;\w+=[^;,]+)*)', value)
    assert found, f"no member {name!r} in {value!r}"
    return {key: int(number) for key, number in re.findall(r";(\w+)=(\d+)", found.group(1))}


@pytest.mark.parametrize("algorithm", RATE_ALGORITHMS)
async def test_remaining_never_exceeds_the_quota_told(redis_url: str, algorithm: str) -> None:
    """r <= q in every RateLimit member, and the X-RateLimit trio repeats the headline member,
    also for buckets whose burst is above the limit (which admit more than q at first)."""
    burst = {"burst": 10} if ALGORITHMS[algorithm].takes_burst else {}
    enforcer = make_enforcer(redis_url, one_rule_policy(algorithm, 5, "1m", **burst), local_deny_cache=False)
    await enforcer.start()
    identity = await enforcer.identify(ip=f"198.51.100.{len(algorithm)}")
    admitted = 0
    for _ in range(12):
        decision = await enforcer.decide(identity, "GET /x")
        headers = parsed(rate_limit_headers(decision))
        quota = member(headers["ratelimit-policy"], "r")["q"]
        told = member(headers["ratelimit"], "r")
        assert told["r"] <= quota == 5
        assert (headers["x-ratelimit-limit"], headers["x-ratelimit-remaining"], headers["x-ratelimit-reset"]) == (
            str(quota), str(told["r"]), str(told["t"]))
        admitted += decision.allowed
        if algorithm == "concurrency":
            enforcer.finish(decision, 200)
    assert admitted == (12 if algorithm == "concurrency" else 10 if burst else 5)
    await enforcer.aclose()
