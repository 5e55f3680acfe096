"""``ratewarden recommend``: the proposals of ``analytics.recommend`` as a table (or JSON), and
staging them as shadow rules (audited as ``cli:<user>``)."""

from __future__ import annotations

import getpass
import json
from typing import get_args

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from ratewarden.enforcer.loader import load_policy
from ratewarden.enforcer.tiers import TierStore
from ratewarden.enforcer.topology import parse_redis_url, sync_client

from .admin import AdminSettings
from .audit import AuditLog
from .client import connect
from .plans import Plans
from .ranges import RangeName, window_of
from .recommend import recommend
from .staging import stage

__all__ = ["run"]


def run(period: str, percentile: float, headroom: float, tiers: list[str], staging: bool, as_json: bool,
        out: Console, errors: Console) -> int:
    """Print the proposals; with ``staging``, add each to its tier as a shadow rule. Returns the exit code."""
    if period not in get_args(RangeName):
        errors.print(f"[red]--range must be one of {', '.join(get_args(RangeName))}, not {period!r}[/red]")
        return 2
    if not 0 < percentile <= 100 or headroom < 1:
        errors.print("[red]--percentile must be in (0, 100] and --headroom at least 1[/red]")
        return 2
    try:
        settings = AdminSettings()
    except ValidationError as exc:
        errors.print(f"[red]invalid settings:[/red] {exc}")
        return 2
    start, end = window_of(period)  # type: ignore[arg-type]  # checked above
    clickhouse = connect(settings.clickhouse_url)
    proposals = recommend(clickhouse, start, end, percentile, headroom, tiers or None, db=settings.clickhouse_database)
    if as_json:
        out.print_json(json.dumps({"start": start.isoformat(), "end": end.isoformat(),
                                   "proposals": [p.as_dict() for p in proposals]}))
    else:
        table = Table(title=f"proposed per-client limits, {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC "
                            f"(p{percentile:g} of per-minute peaks x {headroom:g})")
        for column in ("tier", "limit/min", "peak", "clients", "left out (alerts)", "requests", "would deny",
                       "clients denied", "legit denied", "legit clients denied"):
            table.add_column(column)
        for p in proposals:
            table.add_row(p.tier, str(p.limit), str(p.peak_at_percentile), str(p.legit_clients),
                          str(len(p.excluded_clients)), str(p.requests), str(p.would_deny_requests),
                          str(p.would_deny_clients), str(p.would_deny_legit_requests), str(p.would_deny_legit_clients))
        out.print(table)
    if staging and proposals:
        client = sync_client(parse_redis_url(settings.redis_url))
        plans = Plans(TierStore(client), load_policy(settings.policy_file) if settings.policy_file else None)
        audit = AuditLog(client, settings.audit_max_entries)
        for p in proposals:
            if stage(plans, audit, clickhouse, f"cli:{getpass.getuser()}", p.tier, p.limit, start, end,
                     db=settings.clickhouse_database) is not None:
                out.print(f"staged {p.rule_name} on tier {p.tier} as a shadow rule")
    return 0
