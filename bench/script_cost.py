"""Server time of one decision, by policy: what the decide script costs Redis itself,
read from INFO commandstats (usec_per_call), with no client in the figure.

    python bench/script_cost.py [--quick] [--calls 20000] [--rounds 5]

Policies, interleaved per round: ``multi`` (bench/policy.yaml: 4 rules + 2 quotas), ``flags``
(the same rules with the fair-usage flags set: one rule a shadow, one refunding 5xx, the
monthly quota anchored on the 31st; no counter added), and ``features``
(bench/policy_features.yaml: a shadow rule and the route's capacity added: three counters more).
Prints a table and one JSON line of medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
from rich.console import Console
from rich.table import Table

from ratewarden.enforcer import Policy, load_policy
from ratewarden.enforcer.identity import Identity
from ratewarden.enforcer.plan import compile_plan
from ratewarden.enforcer.scripts import script
from ratewarden.local import redis_url as local_redis

ROUTE = "GET /v1/items/{item_id}"
BENCH = Path(__file__).resolve().parent


def with_flags(policy: Policy) -> Policy:
    """``policy`` with the bench tier's first rule refunding 5xx, its last rule a shadow and the
    monthly quota anchored: the features' flags without a counter more."""
    tier = policy.tiers["bench"]
    rules = list(tier.rules)
    rules[0] = rules[0].model_copy(update={"refund_statuses": ((500, 599),)})
    rules[-1] = rules[-1].model_copy(update={"shadow": True})
    quotas = tier.quotas.model_copy(update={"billing_anchor_day": 31})
    return policy.model_copy(update={"tiers": {**policy.tiers, "bench": tier.model_copy(
        update={"rules": rules, "quotas": quotas})}})


def server_us_per_call(client: redis.Redis, policy: Policy, calls: int) -> float:
    plan = compile_plan(policy, "bench", ROUTE)
    sha = client.script_load(script("decide").source)
    client.config_resetstat()
    pipe = client.pipeline(transaction=False)
    for i in range(calls):
        identity = Identity(f"k:key{i % 1000}", "bench", f"10.0.{i % 250}.1", key_id=f"key{i % 1000}")
        keys = plan.keys(identity)
        pipe.evalsha(sha, len(keys), *keys, "d", "", "0", 1, f"r{i}", "", *plan.script_args)
        if i % 1000 == 999:
            assert all(reply[0] == 1 for reply in pipe.execute()), "a benchmark decision was denied"
    pipe.execute()
    return float(client.info("commandstats")["cmdstat_evalsha"]["usec_per_call"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a run of a few seconds (5,000 calls, 3 rounds)")
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.quick:
        args.calls, args.rounds = 5_000, 3
    multi = load_policy(BENCH / "policy.yaml")
    policies = {"multi": multi, "flags": with_flags(multi), "features": load_policy(BENCH / "policy_features.yaml")}
    url, server = local_redis()
    runs: dict[str, list[float]] = {name: [] for name in policies}
    try:
        client = redis.Redis.from_url(url)
        for _ in range(args.rounds):
            for name, policy in policies.items():
                runs[name].append(server_us_per_call(client, policy, args.calls))
    finally:
        if server:
            server.stop()
    medians = {name: statistics.median(values) for name, values in runs.items()}
    table = Table(title=f"decide.lua server time on {ROUTE} (median of {args.rounds} x {args.calls:,} calls)")
    for column in ("policy", "counters", "µs per call", "× multi"):
        table.add_column(column, justify="right")
    for name, policy in policies.items():
        counters = len(compile_plan(policy, "bench", ROUTE).rules)
        table.add_row(name, str(counters), f"{medians[name]:.1f}", f"{medians[name] / medians['multi']:.3f}")
    Console().print(table)
    print(json.dumps({f"{name}_us_per_call": round(value, 2) for name, value in medians.items()}
                     | {"flags_vs_multi": round(medians["flags"] / medians["multi"], 3),
                        "features_vs_multi": round(medians["features"] / medians["multi"], 3)}))


if __name__ == "__main__":
    main()
