"""The Python side of the script contract (enforcer/contract.py) pinned against decide.lua:
its source (codes, flags, argument layout) and a real server (reply shapes)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis

from ratewarden.enforcer import contract
from ratewarden.enforcer.contract import ALGORITHMS, DECIDE, FIELDS_PER_RULE, HEAD_ARGS, SETTLE, Reply
from ratewarden.enforcer.policy import Algorithm
from ratewarden.enforcer.scripts import script

LUA = (Path(contract.__file__).parent / "lua" / "decide.lua").read_text()
# the script's names for the algorithms, in the contract's names
LUA_NAMES = {"FIXED": "fixed_window", "SW_COUNTER": "sliding_window_counter", "SW_LOG": "sliding_window_log",
             "TOKEN_BUCKET": "token_bucket", "GCRA": "gcra", "CONCURRENCY": "concurrency",
             "QUOTA_DAY": "quota_daily", "QUOTA_MONTH": "quota_monthly"}


def lua_constants(first_name: str) -> dict[str, int]:
    """The names and values of the script's ``local A, B, ... = 1, 2, ...`` line that starts with ``first_name``."""
    match = re.search(rf"^local ({first_name}(?:, \w+)*) = ([\d, ]+)$", LUA, re.MULTILINE)
    assert match, f"no 'local {first_name}, ...' line in decide.lua"
    names, values = match.group(1).split(", "), [int(v) for v in match.group(2).split(", ")]
    assert len(names) == len(values)
    return dict(zip(names, values, strict=True))


def test_algorithm_codes_match_the_script() -> None:
    codes = lua_constants("FIXED")
    assert {LUA_NAMES[name]: code for name, code in codes.items()} == {
        name: spec.code for name, spec in ALGORITHMS.items()}


def test_every_policy_algorithm_is_in_the_table() -> None:
    assert {a.value for a in Algorithm} <= set(ALGORITHMS)
    assert len({spec.suffix for spec in ALGORITHMS.values()}) == len(ALGORITHMS)  # keys never collide


def test_rule_flags_match_the_script() -> None:
    assert lua_constants("SHADOW") == {"SHADOW": contract.SHADOW, "DEFERRED": contract.DEFERRED,
                                       "QUIET": contract.QUIET, "REFUND": contract.REFUND}


def test_argument_layout_matches_the_script() -> None:
    # rule i's fields start after the head arguments and the rule count
    bases = set(re.findall(r"local base = (\d+) \+ \(i - 1\) \* (\d+)", LUA))
    assert bases == {(str(HEAD_ARGS + 1), str(FIELDS_PER_RULE))}
    assert f"ARGV[1] == '{SETTLE.decode()}'" in LUA
    assert f'"{DECIDE.decode()}" to decide' in LUA


def one_rule_args(code: int, limit: int, flags: int = 0, mode: bytes = DECIDE) -> list[object]:
    return [mode, "", 0, 1, "rid-1", "1" if mode == SETTLE else "", 1, code, limit, 60_000_000, 0, flags]


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_replies_have_the_contract_shape(redis_sync: redis.Redis, name: str) -> None:
    decide = script("decide")
    code = ALGORITHMS[name].code
    key = f"rw:{{contract}}:{name}"
    admitted = redis_sync.eval(decide.source, 1, key, *one_rule_args(code, 1))
    denied = redis_sync.eval(decide.source, 1, key, *one_rule_args(code, 1))
    assert len(admitted) == len(denied) == len(Reply._fields)
    assert Reply(*admitted).allowed == 1 and Reply(*admitted).head == 1
    assert Reply(*denied).allowed == 0 and Reply(*denied).decider == 1 and Reply(*denied).retry_after_us > 0
    assert redis_sync.eval(decide.source, 1, key, *one_rule_args(code, 1, contract.REFUND, SETTLE)) == 1


def test_an_unknown_code_is_an_error(redis_sync: redis.Redis) -> None:
    unknown = max(spec.code for spec in ALGORITHMS.values()) + 1
    with pytest.raises(redis.ResponseError, match="unknown algorithm"):
        redis_sync.eval(script("decide").source, 1, "rw:{contract}:x", *one_rule_args(unknown, 1))
