"""``ratewarden recommend``: the proposals of ``analytics.recommend`` as a table (or JSON), and
staging them as shadow rules. It reads ClickHouse and writes Redis itself, or, with an admin URL,
asks a running admin API (the way with embedded chDB, whose one process is the stream worker)."""

from __future__ import annotations

import getpass
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, get_args

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

_COLUMNS = {"tier": "tier", "limit": "limit/min", "peak_at_percentile": "peak", "legit_clients": "clients",
            "excluded_clients": "left out (alerts)", "requests": "requests", "would_deny_requests": "would deny",
            "would_deny_clients": "clients denied", "would_deny_legit_requests": "legit denied",
            "would_deny_legit_clients": "legit clients denied"}


def _cli_user() -> str:
    """``cli:<login name>`` as the audit log takes it (a name it cannot take becomes ``_``s)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name (a container's anonymous uid)
        user = "unknown"
    return "cli:" + re.sub(r"[^A-Za-z0-9_.@:+-]", "_", user)[:60]


class AdminApiError(Exception):
    """The admin API refused a call or could not be reached (the message says which)."""


def _call(admin_url: str, token: str, method: str, path: str, query: dict[str, Any] | None = None,
          body: dict[str, Any] | None = None) -> Any:
    url = admin_url.rstrip("/") + "/api/v1" + path + ("?" + urllib.parse.urlencode(query, doseq=True) if query else "")
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body else None, headers={
        "authorization": f"Bearer {token}", "content-type": "application/json",
        "x-ratewarden-actor": _cli_user()})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        raise AdminApiError(f"{method} {path}: HTTP {exc.code} {exc.read()[:300].decode(errors='replace')}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise AdminApiError(f"cannot reach the admin API at {admin_url}: {exc}") from None


def run(period: str, percentile: float, headroom: float, tiers: list[str], staging: bool, as_json: bool,
        admin_url: str | None, out: Console, errors: Console) -> int:
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
    try:
        if admin_url:
            if settings.admin_token is None:
                errors.print("[red]--admin-url needs RATEWARDEN_ADMIN_TOKEN (the admin token, or one from "
                             "ratewarden admin-token)[/red]")
                return 2
            staged = _remote(admin_url, settings.admin_token.get_secret_value(), period, percentile, headroom, tiers,
                             staging)
        else:
            staged = _local(settings, period, percentile, headroom, tiers, staging)
    except AdminApiError as exc:
        errors.print(f"[red]{exc}[/red]")
        return 1
    found, done = staged
    _print(found, period, percentile, headroom, as_json, out)
    for proposal in done:
        out.print(f"staged {proposal['rule_name']} on tier {proposal['tier']} as a shadow rule")
    return 0


Found = tuple[dict[str, Any], list[dict[str, Any]]]  # ({start, end, proposals}, the proposals staged)


def _remote(admin_url: str, token: str, period: str, percentile: float, headroom: float, tiers: list[str],
            staging: bool) -> Found:
    found = _call(admin_url, token, "GET", "/recommendations", {"range": period, "percentile": percentile,
                                                                 "headroom": headroom, "tier": tiers})
    done = []
    for p in found["proposals"] if staging else []:
        _call(admin_url, token, "POST", "/recommendations/stage", body={"tier": p["tier"], "limit": p["limit"],
                                                                        "range": period})
        done.append(p)
    return found, done


def _local(settings: AdminSettings, period: str, percentile: float, headroom: float, tiers: list[str],
           staging: bool) -> Found:
    start, end = window_of(period)  # type: ignore[arg-type]  # checked by run()
    clickhouse = connect(settings.clickhouse_url)
    proposals = recommend(clickhouse, start, end, percentile, headroom, tiers or None, db=settings.clickhouse_database)
    found = {"start": start.isoformat(), "end": end.isoformat(), "proposals": [p.as_dict() for p in proposals]}
    done = []
    if staging and proposals:
        client = sync_client(parse_redis_url(settings.redis_url))
        plans = Plans(TierStore(client), load_policy(settings.policy_file) if settings.policy_file else None)
        audit = AuditLog(client, settings.audit_max_entries)
        for p in proposals:
            if stage(plans, audit, clickhouse, _cli_user(), p.tier, p.limit, start, end,
                     db=settings.clickhouse_database) is not None:
                done.append(p.as_dict())
    return found, done


def _print(found: dict[str, Any], period: str, percentile: float, headroom: float, as_json: bool,
           out: Console) -> None:
    if as_json:
        out.print_json(json.dumps(found))
        return
    table = Table(title=f"proposed per-client limits over {period} from {found['start']} "
                        f"(p{percentile:g} of per-minute peaks x {headroom:g})")
    for title in _COLUMNS.values():
        table.add_column(title)
    for p in found["proposals"]:
        table.add_row(*(str(len(p[k]) if k == "excluded_clients" else p[k]) for k in _COLUMNS))
    out.print(table)
