"""Policy files: loading, validation errors naming file and field, effective plans, the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ratewarden.cli import app
from ratewarden.enforcer import PolicyError, load_policy, policy_from_mapping
from ratewarden.enforcer.durations import parse_duration
from ratewarden.enforcer.plan import compile_plan
from ratewarden.enforcer.policy import route_matches

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "policy.yaml"


def test_example_policy_loads_with_demo_limits() -> None:
    policy = load_policy(EXAMPLE)
    plan = compile_plan(policy, policy.anonymous_tier, "GET /v1/items")
    per_ip = [r for r in plan.rules if r.scope == ("ip",)]
    assert [(r.limit, r.period_s) for r in per_ip] == [(60, 60.0)]
    assert compile_plan(policy, "free", "GET /healthz").exempt
    assert compile_plan(policy, "free", "GET /v1/search").cost == 5


def test_toml_and_yaml_give_the_same_policy(tmp_path: Path) -> None:
    toml = tmp_path / "p.toml"
    toml.write_text(
        '[tiers.free]\nrules = [{name = "m", limit = 10, period = "1m"}]\n[tiers.anonymous]\n'
    )
    yaml_file = tmp_path / "p.yaml"
    yaml_file.write_text("tiers:\n  free:\n    rules: [{name: m, limit: 10, period: 1m}]\n  anonymous: {}\n")
    assert load_policy(toml) == load_policy(yaml_file)


@pytest.mark.parametrize(
    ("document", "path", "fragment"),
    [
        ({"tiers": {"free": {"rules": [{"name": "a", "limit": 0, "period": "1m"}]}, "anonymous": {}}},
         "tiers.free.rules[0].limit", "greater than 0"),
        ({"tiers": {"free": {"rules": [{"name": "a", "limit": 1, "period": "1m", "algorithm": "leaky"}]},
                    "anonymous": {}}},
         "tiers.free.rules[0].algorithm", "'token_bucket'"),
        ({"tiers": {"free": {"rules": [{"name": "a", "limit": 1, "period": "soon"}]}, "anonymous": {}}},
         "tiers.free.rules[0].period", "ms, s, m, h or d"),
        ({"tiers": {"free": {"rules": [{"name": "a", "limit": 1, "period": "1m", "scope": ["planet"]}]},
                    "anonymous": {}}},
         "tiers.free.rules[0].scope[0]", "'client', 'key', 'user', 'ip', 'endpoint' or 'custom'"),
        ({"tiers": {"free": {"rules": [{"name": "a", "limit": 1, "period": "1m", "burst": 5}]}, "anonymous": {}}},
         "tiers.free.rules[0]", "burst applies only to token_bucket and gcra"),
        ({"tiers": {"free": {}}}, "", "anonymous_tier 'anonymous' is not a tier"),
        ({"tiers": {"free": {}, "anonymous": {}}, "endpoints": [{"route": "/v1/x"}]},
         "endpoints[0].route", "expected 'METHOD /path'"),
        ({"tiers": {"free": {"colour": "red"}, "anonymous": {}}}, "tiers.free.colour", "Extra inputs"),
        ({"tiers": {"free": {"rules": [{"name": "a", "limit": 1, "period": "1m", "count_statuses": ["6xx"]}]},
                    "anonymous": {}}},
         "tiers.free.rules[0].count_statuses", "a class such as '5xx'"),
        ({"tiers": {"free": {"rules": [{"name": "a", "limit": 1, "period": "1m", "count_statuses": [401],
                                        "refund_statuses": ["5xx"]}]}, "anonymous": {}}},
         "tiers.free.rules[0]", "count_statuses and refund_statuses exclude each other"),
        ({"tiers": {"free": {"rules": [{"name": "a", "limit": 1, "period": "1m", "algorithm": "concurrency",
                                        "refund_statuses": ["5xx"]}]}, "anonymous": {}}},
         "tiers.free.rules[0]", "do not apply to concurrency"),
        ({"tiers": {"free": {}, "anonymous": {}},
          "capacity": [{"name": "s", "endpoints": ["GET /s"], "limit": 10, "shares": {"free": 0.7, "anonymous": 0.5}}]},
         "capacity[0]", "shares sum to 1.2: at most 1"),
        ({"tiers": {"free": {}, "anonymous": {}},
          "capacity": [{"name": "s", "endpoints": ["GET /s"], "limit": 10, "shares": {"gold": 0.5}}]},
         "", "capacity 's' shares name unknown tiers ['gold']"),
        ({"tiers": {"free": {}, "anonymous": {}},
          "capacity": [{"name": "s", "endpoints": ["GET /s"], "limit": 10, "shed_status": 500}]},
         "capacity[0].shed_status", "429 or 503"),
    ],
)
def test_invalid_policy_names_field_and_what_is_allowed(document: dict, path: str, fragment: str) -> None:
    with pytest.raises(PolicyError) as caught:
        policy_from_mapping(document, "my-policy.yaml")
    problems = dict(caught.value.problems)
    assert path in problems, caught.value
    assert fragment in problems[path]
    assert str(caught.value).startswith("my-policy.yaml: invalid policy")


def test_unreadable_and_malformed_files_are_policy_errors(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read file"):
        load_policy(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("tiers: [unclosed")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(broken)
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n- 2\n")
    with pytest.raises(PolicyError, match="expected a mapping"):
        load_policy(top)


def test_cost_above_a_rules_capacity_is_refused() -> None:
    policy = policy_from_mapping({
        "tiers": {"anonymous": {"rules": [{"name": "tiny", "limit": 3, "period": "1s"}]}, "free": {}},
        "endpoints": [{"route": "GET /big", "cost": 5}],
    })
    with pytest.raises(ValueError, match="costs 5 but rule 'tiny'"):
        compile_plan(policy, "anonymous", "GET /big")


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("1m", 60), ("1.5h", 5400), ("1d", 86400),
                                               ("250ms", 0.25), (10, 10), ("minute", 60), ("hour", 3600)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "1 month", "-5s", 0, True, None, "1x"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_route_patterns() -> None:
    assert route_matches("GET /v1/items/{item_id}", "GET /v1/items/{item_id}")
    assert not route_matches("GET /v1/items", "POST /v1/items")
    assert route_matches("* /v1/items", "DELETE /v1/items")
    assert route_matches("GET /v1/*", "GET /v1/items/{item_id}")
    assert not route_matches("GET /v1/items", "GET /v1/items/{item_id}")


def test_cli_policy_check_prints_table_and_fails_on_bad_file(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["policy", "check", str(EXAMPLE), "--route", "GET /v1/search"])
    assert result.exit_code == 0, result.output
    assert "per-ip" in result.output and "is valid" in result.output
    assert "anonymous on GET /v1/search: cost 5" in result.output
    bad = tmp_path / "bad.toml"
    bad.write_text('[tiers.free]\nrules = [{name = "x", limit = -1, period = "1m"}]\n[tiers.anonymous]\n')
    result = runner.invoke(app, ["policy", "check", str(bad)])
    assert result.exit_code == 1
    assert "tiers.free.rules[0].limit" in result.output
