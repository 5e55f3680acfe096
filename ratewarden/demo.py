"""``ratewarden demo``: the demo API behind the enforcer, driven by labelled clients.

Starts a local Valkey (or uses ``RATEWARDEN_REDIS_URL``), serves the FastAPI demo
app with uvicorn on a free port, creates API keys for each tier, and sends real
HTTP traffic from legitimate clients and abusive ones while a live table shows
what the enforcer answers. Ends with a summary (and ``--report FILE`` as JSON).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis
import uvicorn
from rich.console import Console
from rich.live import Live
from rich.table import Table

from enforcer import ApiKeyStore, Enforcer, EnforcerSettings, load_policy
from examples.demo_fastapi.app import POLICY_FILE, create_app

from .local import RedisServer, free_port


@dataclass
class DemoClient:
    """One simulated caller: its label (``legit`` or an abuse pattern), tier and behaviour."""

    name: str
    label: str
    tier: str
    rate_per_s: float
    method: str = "GET"
    paths: tuple[str, ...] = ("/v1/items",)
    api_key: str | None = None
    ip: str = "127.0.0.1"
    statuses: Counter = field(default_factory=Counter)
    last_ratelimit: str = ""


def _clients() -> list[DemoClient]:
    return [
        DemoClient("free-app", "legit", "free", 4, paths=("/v1/items", "/v1/items/42", "/v1/search")),
        DemoClient("paid-app", "legit", "paid", 30, paths=("/v1/items", "/v1/items/7")),
        DemoClient("trusted-batch", "legit", "trusted", 60, paths=("/v1/items",)),
        DemoClient("anonymous-reader", "legit", "anonymous", 0.5, paths=("/v1/items",), ip="198.51.100.20"),
        DemoClient("burst-free-key", "burst", "free", 60, paths=("/v1/items",)),
        DemoClient("anonymous-scraper", "scraping", "anonymous", 25,
                   paths=tuple(f"/v1/items/{i}" for i in range(900, 1200)), ip="203.0.113.66"),
        DemoClient("login-stuffer", "credential_stuffing", "anonymous", 5, method="POST",
                   paths=("/v1/login",), ip="203.0.113.77"),
    ]


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # runs in a thread
        pass


async def _drive(client: DemoClient, base_url: str, stop_at: float) -> None:
    headers = {"X-Forwarded-For": client.ip}
    if client.api_key:
        headers["Authorization"] = f"Bearer {client.api_key}"
    interval = 1.0 / client.rate_per_s
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=5) as http:
        i = 0
        next_at = time.monotonic()
        while time.monotonic() < stop_at:
            path = client.paths[i % len(client.paths)]
            i += 1
            try:
                if client.method == "POST":
                    response = await http.post(path, json={"username": f"user{i}", "password": "guess"})
                else:
                    response = await http.get(path)
                client.statuses[response.status_code] += 1
                client.last_ratelimit = response.headers.get("ratelimit", client.last_ratelimit)
            except httpx.HTTPError:
                client.statuses["error"] += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))


def _table(clients: list[DemoClient], remaining_s: float) -> Table:
    table = Table(title=f"ratewarden demo: {remaining_s:4.0f} s left")
    for column in ("client", "label", "tier", "sent", "2xx", "401/404", "429", "RateLimit (last)"):
        table.add_column(column)
    for c in clients:
        ok = sum(n for s, n in c.statuses.items() if isinstance(s, int) and s < 300)
        app_errors = c.statuses[401] + c.statuses[404]
        table.add_row(c.name, c.label, c.tier, str(sum(c.statuses.values())), str(ok), str(app_errors),
                      f"[red]{c.statuses[429]}[/red]" if c.statuses[429] else "0", c.last_ratelimit)
    return table


def run_demo(duration_s: float, report: Path | None, console: Console) -> dict[str, object]:
    """Run the demo for ``duration_s`` seconds and return the report."""
    redis_url = os.environ.get("RATEWARDEN_REDIS_URL")
    server = None
    if not redis_url:
        server = RedisServer().start()
        redis_url = server.url
        console.print(f"started Valkey at {redis_url}")
    secret = os.environ.get("RATEWARDEN_API_KEY_SECRET") or secrets.token_urlsafe(24)
    settings = EnforcerSettings(redis_url=redis_url, api_key_secret=secret, trusted_proxies=["127.0.0.1/32"])
    clients = _clients()
    keys = ApiKeyStore(redis.Redis.from_url(redis_url), secret.encode())
    for client in clients:
        if client.tier != "anonymous":
            client.api_key, _ = keys.create(owner=client.name, tier=client.tier)
    port = free_port()
    app = create_app(Enforcer(load_policy(POLICY_FILE), settings))
    web = _Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    while not web.started:
        time.sleep(0.05)
    console.print(f"demo API at http://127.0.0.1:{port} (policy {POLICY_FILE.name}); driving traffic for {duration_s:g} s")

    async def drive_all() -> None:
        stop_at = time.monotonic() + duration_s
        tasks = [asyncio.create_task(_drive(c, f"http://127.0.0.1:{port}", stop_at)) for c in clients]
        with Live(_table(clients, duration_s), console=console, refresh_per_second=4) as live:
            while not all(t.done() for t in tasks):
                await asyncio.sleep(0.25)
                live.update(_table(clients, max(0.0, stop_at - time.monotonic())))
        await asyncio.gather(*tasks)

    try:
        asyncio.run(drive_all())
    finally:
        web.should_exit = True
        thread.join(10)
        if server:
            server.stop()
    by_status: Counter = Counter()
    for c in clients:
        by_status.update({str(k): v for k, v in c.statuses.items()})
    result = {
        "requests_sent": sum(sum(c.statuses.values()) for c in clients),
        "responses_by_status": dict(sorted(by_status.items())),
        "labels": {c.name: c.label for c in clients},
        "clients": {c.name: {"tier": c.tier, "label": c.label, "statuses": {str(k): v for k, v in c.statuses.items()}}
                    for c in clients},
    }
    limited = [c.name for c in clients if c.statuses[429]]
    console.print()
    console.print(f"[bold]summary[/bold]: {result['requests_sent']} requests, by status {result['responses_by_status']}")
    console.print(f"clients that met a limit: {', '.join(limited) or 'none'}")
    if report:
        report.write_text(json.dumps(result, indent=2))
        console.print(f"report written to {report}")
    return result
