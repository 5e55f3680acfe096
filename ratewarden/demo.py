"""``ratewarden demo``: the whole pipeline (``ratewarden up``) driven by labelled HTTP traffic.

Legitimate clients of every tier and one client per abuse pattern send real requests to
the demo API. A live view shows requests/s, denials and the alerts the stream raises.
At the end it reconciles requests sent, events published to Kafka and requests counted in
ClickHouse, and scores detection per pattern (``--report FILE`` writes it all as JSON).

The demo runs the worker with short windows (``DEMO_SETTINGS``) so that a minute of traffic
is enough for every detector, the traffic spike included.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from ratewarden.enforcer import ApiKeyStore
from ratewarden.enforcer.topology import parse_redis_url, sync_client

from .stack import RedisKind, Stack, stop_requested

__all__ = ["run_demo", "DEMO_SETTINGS"]

DEMO_SETTINGS = {  # windows short enough for a one-minute demo
    "RATEWARDEN_WINDOW_S": "5", "RATEWARDEN_SHORT_WINDOW_S": "10", "RATEWARDEN_SHORT_HOP_S": "5",
    "RATEWARDEN_ALLOWED_LATENESS_S": "1", "RATEWARDEN_IDLE_CLOSE_S": "2",
    "RATEWARDEN_DETECTORS__TRAFFIC_SPIKE__MIN_HISTORY": "2", "RATEWARDEN_DETECTORS__TRAFFIC_SPIKE__ALPHA": "0.1",
    "RATEWARDEN_ALERT_COOLDOWN_S": "3600",
}
EXPECTED = {"credential_stuffing": "credential_stuffing", "scraping": "scraping", "retry_storm": "retry_storm",
            "key_sharing": "key_sharing", "key_cycling": "key_cycling", "traffic_spike": "traffic_spike"}


@dataclass
class DemoClient:
    """One simulated caller: its label (``legit`` or an abuse pattern), tier and behaviour."""

    name: str
    label: str
    tier: str
    rate_per_s: float
    method: str = "GET"
    paths: tuple[str, ...] = ("/v1/items",)
    ip: str = "198.51.100.10"
    keys: int = 0  # API keys it uses (0: anonymous)
    spread_ips: bool = False  # a new source address on every request
    surge_at: float | None = None  # share of the run after which the rate goes 40x
    api_keys: list[str] = field(default_factory=list)
    client_ids: list[str] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    started: float = 0.0


def demo_clients() -> list[DemoClient]:
    """The demo's traffic: legitimate apps within their tiers' limits, and the abusive patterns the
    detectors should flag."""
    return [
        # 2 requests/s of which one in three is a search (cost 5): 4.7 units/s, within free's 300 a minute
        DemoClient("free-app", "legit", "free", 2, paths=("/v1/items", "/v1/items/42", "/v1/search"), keys=1,
                   ip="198.51.100.11"),
        DemoClient("paid-app", "legit", "paid", 30, paths=("/v1/items", "/v1/items/7", "/v1/items/8"), keys=1,
                   ip="198.51.100.12"),
        DemoClient("trusted-batch", "legit", "trusted", 50, paths=("/v1/items",), keys=1, ip="198.51.100.13"),
        DemoClient("anonymous-reader", "legit", "anonymous", 0.5, ip="198.51.100.14"),
        DemoClient("login-stuffer", "credential_stuffing", "anonymous", 5, method="POST", paths=("/v1/login",),
                   ip="203.0.113.77"),
        DemoClient("item-scraper", "scraping", "anonymous", 10, paths=tuple(f"/v1/items/{i}" for i in range(950, 1600)),
                   ip="203.0.113.66"),
        DemoClient("retry-storm", "retry_storm", "free", 40, keys=1, ip="203.0.113.55"),
        DemoClient("leaked-key", "key_sharing", "paid", 10, keys=1, spread_ips=True),
        DemoClient("key-cycler", "key_cycling", "free", 6, keys=15, ip="203.0.113.44"),
        DemoClient("spiking-app", "traffic_spike", "paid", 2, keys=1, surge_at=0.4, ip="198.51.100.15"),
    ]


async def _drive(client: DemoClient, base_url: str, started: float, duration_s: float) -> None:
    rng = random.Random(client.name)
    stop_at = started + duration_s
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as http:
        i = 0
        next_at = time.monotonic()
        while (now := time.monotonic()) < stop_at:
            rate = client.rate_per_s
            if client.surge_at is not None and now - started >= client.surge_at * duration_s:
                rate *= 40
            headers = {"x-forwarded-for": (f"{rng.randint(11, 220)}.{rng.randint(0, 255)}."
                                           f"{rng.randint(0, 255)}.{rng.randint(1, 254)}")
                       if client.spread_ips else client.ip}
            if client.api_keys:
                headers["authorization"] = f"Bearer {client.api_keys[i % len(client.api_keys)]}"
            path = client.paths[i % len(client.paths)]
            i += 1
            try:
                if client.method == "POST":
                    response = await http.post(path, json={"username": f"user{i}", "password": "guess"},
                                               headers=headers)
                else:
                    response = await http.get(path, headers=headers)
                client.statuses[response.status_code] += 1
            except httpx.HTTPError:
                client.statuses["error"] += 1
            next_at += 1.0 / rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))


def _view(clients: list[DemoClient], alerts: list[dict[str, Any]], remaining_s: float, elapsed_s: float) -> Group:
    table = Table(title=f"ratewarden demo: {remaining_s:3.0f} s left")
    for column in ("client", "label", "tier", "req/s", "sent", "2xx", "401/404", "429"):
        table.add_column(column)
    for c in clients:
        sent = sum(c.statuses.values())
        ok = sum(n for s, n in c.statuses.items() if isinstance(s, int) and s < 300)
        table.add_row(c.name, c.label, c.tier, f"{sent / max(elapsed_s, 1e-3):.1f}", str(sent), str(ok),
                      str(c.statuses[401] + c.statuses[404]),
                      f"[red]{c.statuses[429]}[/red]" if c.statuses[429] else "0")
    feed = Table(title="alerts")
    for column in ("first seen", "type", "severity", "client", "penalty"):
        feed.add_column(column)
    for a in alerts[-12:]:
        feed.add_row(str(a["first_seen"])[11:19], a["alert_type"], a["severity"], a["client_id"],
                     a.get("penalty") or "")
    return Group(table, feed)


class _Admin:
    def __init__(self, stack: Stack) -> None:
        self.base = stack.admin_url
        self.headers = {"authorization": f"Bearer {stack.admin_token}"}

    async def get(self, http: httpx.AsyncClient, path: str, **params: Any) -> Any:
        response = await http.get(f"{self.base}{path}", params=params, headers=self.headers)
        response.raise_for_status()
        return response.json()


async def _events_in_kafka(bootstrap: str, topic: str = "ratewarden.requests", quiet_s: float = 1.5) -> int:
    """Distinct events on ``topic``, read from the beginning until it has been quiet ``quiet_s``.

    Counted by reading rather than from end offsets: Tansu's ListOffsets answer was seen
    one behind the records it served.
    """
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False, max_poll_records=10_000)
    await consumer.start()
    ids: set[bytes] = set()
    try:
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < quiet_s:
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                ids.update(json.loads(r.value)["event_id"].encode() for r in records)
                quiet_since = time.monotonic()
        return len(ids)
    finally:
        await consumer.stop()


async def _run(stack: Stack, clients: list[DemoClient], duration_s: float, console: Console,
               live_view: bool) -> dict[str, Any]:
    admin = _Admin(stack)
    window_start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    started = time.monotonic()
    tasks = [asyncio.create_task(_drive(c, stack.urls["demo API"], started, duration_s)) for c in clients]
    alerts: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=10) as http:
        with Live(_view(clients, alerts, duration_s, 0), console=console, refresh_per_second=2,
                  transient=not live_view) as live:
            while not all(t.done() for t in tasks):
                await asyncio.sleep(1.0)
                alerts = await _alerts(admin, http, window_start)
                elapsed = time.monotonic() - started
                live.update(_view(clients, alerts, max(0.0, duration_s - elapsed), elapsed))
        await asyncio.gather(*tasks)
        requests_sent = sum(sum(c.statuses.values()) for c in clients)
        console.print("traffic done; waiting for the pipeline to settle ...")
        published = in_clickhouse = -1
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            published = await _events_in_kafka(stack.env["RATEWARDEN_KAFKA_BOOTSTRAP"])
            rows = await admin.get(http, "/api/v1/usage", start=window_start.isoformat())
            in_clickhouse = sum(row["requests"] for row in rows)
            if published == in_clickhouse == requests_sent:
                break
            await asyncio.sleep(1.0)
        await asyncio.sleep(4)  # the last windows close and are examined
        alerts = await _alerts(admin, http, window_start)
    return _report(clients, alerts, requests_sent, published, in_clickhouse)


async def _alerts(admin: _Admin, http: httpx.AsyncClient, since: dt.datetime) -> list[dict[str, Any]]:
    alerts = await admin.get(http, "/api/v1/alerts", start=since.isoformat(), limit=500)
    penalties = {p["client_id"]: p["action"]
                 for p in await admin.get(http, "/api/v1/penalties", start=since.isoformat(), limit=500)}
    for alert in alerts:
        alert["penalty"] = penalties.get(alert["client_id"])
    return sorted(alerts, key=lambda a: a["first_seen"])


def _report(clients: list[DemoClient], alerts: list[dict[str, Any]], sent: int, published: int,
            in_clickhouse: int) -> dict[str, Any]:
    owner = {client_id: c for c in clients for client_id in c.client_ids}
    found: dict[str, set[str]] = {}
    for alert in alerts:
        if alert["client_id"] in owner:
            found.setdefault(owner[alert["client_id"]].name, set()).add(alert["alert_type"])
    patterns: dict[str, dict[str, int]] = {}
    for c in clients:
        score = patterns.setdefault(c.label, {"clients": 0, "detected": 0, "missed": 0, "false_alarms": 0})
        score["clients"] += 1
        if c.label == "legit":
            score["false_alarms"] += bool(found.get(c.name))
        elif EXPECTED[c.label] in found.get(c.name, set()):
            score["detected"] += 1
        else:
            score["missed"] += 1
    by_status: Counter = Counter()
    for c in clients:
        by_status.update({str(k): v for k, v in c.statuses.items()})
    return {
        "requests_sent": sent,
        "responses_by_status": dict(sorted(by_status.items())),
        "events_published": published,
        "events_in_clickhouse": in_clickhouse,
        "alerts": [{"client": owner[a["client_id"]].name if a["client_id"] in owner else a["client_id"],
                    "client_id": a["client_id"], "type": a["alert_type"], "severity": a["severity"],
                    "first_seen": str(a["first_seen"]), "penalty": a["penalty"]} for a in alerts],
        "labels": {c.name: c.label for c in clients},
        "patterns": patterns,
        "clients": {c.name: {"tier": c.tier, "label": c.label, "client_ids": c.client_ids,
                             "statuses": {str(k): v for k, v in c.statuses.items()},
                             "alerts": sorted(found.get(c.name, set()))} for c in clients},
    }


def run_demo(duration_s: float, report: Path | None, console: Console, keep: bool = False,
             data_dir: Path = Path("var/demo"), live_view: bool = True, redis: RedisKind = "single") -> dict[str, Any]:
    """Start the pipeline (its Redis of kind ``redis``: see ``Stack``), drive ``duration_s`` seconds
    of labelled traffic, reconcile, report."""
    import shutil

    shutil.rmtree(data_dir, ignore_errors=True)  # a fresh ClickHouse, so the totals are this run's
    stack = Stack(data_dir=data_dir, redis=redis, extra_env=DEMO_SETTINGS,
                  say=lambda text: console.print(f"[dim]{text}[/dim]"))
    stack.start()
    try:
        clients = demo_clients()
        keys = ApiKeyStore(sync_client(parse_redis_url(stack.env["RATEWARDEN_REDIS_URL"])),
                           stack.env["RATEWARDEN_API_KEY_SECRET"].encode())
        for c in clients:
            for n in range(c.keys):
                api_key, record = keys.create(owner=f"{c.name}-{n}", tier=c.tier)
                c.api_keys.append(api_key)
                c.client_ids.append(f"k:{record.id}")
            if not c.keys:
                c.client_ids.append(f"ip:{c.ip}")
            if c.label == "key_cycling":
                c.client_ids.append(f"ip:{c.ip}")  # the finding is about the address
        console.print(f"demo API at {stack.urls['demo API']}, console at {stack.urls['console']} "
                      f"(admin token {stack.admin_token}); {duration_s:g} s of traffic from {len(clients)} clients")
        result = asyncio.run(_run(stack, clients, duration_s, console, live_view))
        _summary(result, console)
        if report:
            report.write_text(json.dumps(result, indent=2, default=str))
            console.print(f"report written to {report}")
        if keep:
            console.print(f"[green]--keep[/green]: the stack stays up, the console at {stack.urls['console']}"
                          " (sign in with the admin token above); Ctrl-C stops it")
            stop_requested().wait()
        return result
    finally:
        stack.stop()


def _summary(result: dict[str, Any], console: Console) -> None:
    console.print()
    console.print(f"[bold]requests sent[/bold] {result['requests_sent']}, [bold]events published[/bold] "
                  f"{result['events_published']}, [bold]in ClickHouse[/bold] {result['events_in_clickhouse']}; "
                  f"responses by status {result['responses_by_status']}")
    table = Table(title="detection by pattern")
    for column in ("pattern", "clients", "detected", "missed", "false alarms"):
        table.add_column(column)
    for pattern, score in result["patterns"].items():
        table.add_row(pattern, str(score["clients"]), str(score["detected"]), str(score["missed"]),
                      str(score["false_alarms"]))
    console.print(table)
