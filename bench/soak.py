"""Soak benchmark: the whole embedded pipeline (as ``ratewarden up``) under a steady request
rate for a long time, with churn: one-off anonymous clients arriving all the time, and now and
then a new scraper that is alerted on and penalised. Samples every few seconds: request rate,
errors, the stream's consumer lag, events in ClickHouse, the memory (RSS) of every process, the
entries of each of the worker's state tables and the overrides in Redis. Prints a table (start,
middle, end, max) and writes a plot of lag and rates over time.

    python bench/soak.py [--quick] [--minutes 10] [--rate 200] [--churn 2] [--scraper-every 15]
                         [--state-ttl 120] [--plot soak.png]

The worker's lifetimes are shortened (``--state-ttl``, ``--cooldown``, ``--penalty``, ``--sweep``)
so that a ten-minute run shows each table levelling off where it would otherwise grow with
every new client. Asserts nothing. The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import redis
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from ratewarden.enforcer import ApiKeyStore
from ratewarden.enforcer.overrides import OVERRIDES_HASH
from ratewarden.local import free_port
from ratewarden.stack import Stack

console = Console()


def rss_mb(pid: int | None) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, TypeError):
        pass
    return float("nan")


@dataclass
class Load:
    """Steady GETs from a few API keys at ``rate`` requests/s over a pool of connections."""

    base_url: str
    keys: list[str]
    rate: float
    statuses: Counter = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)

    async def _client(self, key: str, rate: float) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10,
                                     headers={"authorization": f"Bearer {key}"}) as http:
            next_at = time.monotonic()
            i = 0
            while not self.stop.is_set():
                try:
                    self.statuses[(await http.get(f"/v1/items/{i % 100 + 1}")).status_code] += 1
                except httpx.HTTPError as exc:
                    self.statuses[type(exc).__name__] += 1
                i += 1
                next_at += 1 / rate
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    def run(self) -> None:
        async def main() -> None:
            await asyncio.gather(*(self._client(key, self.rate / len(self.keys)) for key in self.keys))

        asyncio.run(main())


@dataclass
class Churn:
    """Clients that come and go: ``per_s`` new anonymous addresses a second making a few requests
    each, and every ``scraper_every_s`` a new address walking item ids into 404s (a scraping alert,
    and a throttle penalty). Each new client leaves state in the worker that only its lifetime ends."""

    base_url: str
    per_s: float
    scraper_every_s: float
    statuses: Counter = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)
    clients: int = 0

    async def _visit(self, http: httpx.AsyncClient, ip: str, paths: list[str]) -> None:
        for path in paths:
            try:
                self.statuses[(await http.get(path, headers={"x-forwarded-for": ip})).status_code] += 1
            except httpx.HTTPError as exc:
                self.statuses[type(exc).__name__] += 1

    async def _main(self) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10) as http:
            tasks: set[asyncio.Task] = set()
            started, next_scraper = time.monotonic(), time.monotonic() + self.scraper_every_s
            while not self.stop.is_set():
                n = self.clients = self.clients + 1
                ip = f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"
                if self.scraper_every_s and time.monotonic() >= next_scraper:
                    next_scraper += self.scraper_every_s
                    paths = [f"/v1/items/{5000 + i}" for i in range(60)]  # sequential ids past the last item
                else:
                    paths = [f"/v1/items/{n % 100 + 1}"] * 3
                task = asyncio.create_task(self._visit(http, ip, paths))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                await asyncio.sleep(max(0.0, started + n / self.per_s - time.monotonic()))
            await asyncio.gather(*tasks)

    def run(self) -> None:
        if self.per_s > 0:
            asyncio.run(self._main())


def state_entries(metrics_url: str) -> dict[str, int]:
    """Entries of each worker state table, from the worker's metrics (empty before the first sweep)."""
    try:
        text = httpx.get(metrics_url, timeout=5).text
    except httpx.HTTPError:
        return {}
    return {sample.labels["table"]: int(sample.value) for family in text_string_to_metric_families(text)
            if family.name == "ratewarden_stream_state_entries" for sample in family.samples}


async def lag(bootstrap: str, group: str, partitions: int) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition("ratewarden.requests", p) for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
        committed = {tp: (await consumer.committed(tp)) or 0 for tp in tps}
        return sum(max(0, ends[tp] - committed[tp]) for tp in tps)
    finally:
        await consumer.stop()


def in_clickhouse(stack: Stack) -> int:
    response = httpx.get(f"{stack.admin_url}/api/v1/usage", params={"start": "2000-01-01T00:00:00"},
                         headers={"authorization": f"Bearer {stack.admin_token}"}, timeout=20)
    return sum(row["requests"] for row in response.json())


def plot(samples: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t"] for s in samples]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    top.plot(t, [s["rps"] for s in samples], label="requests/s")
    top.plot(t, [s["stored_rps"] for s in samples], label="stored in ClickHouse /s")
    top.set_ylabel("per second")
    top.legend()
    bottom.plot(t, [s["lag"] for s in samples], color="tab:red", label="committed lag (includes open windows)")
    bottom.plot(t, [s["sent"] - s["stored"] for s in samples], color="tab:purple", label="sent, not yet in ClickHouse")
    bottom.set_ylabel("events")
    bottom.set_xlabel("seconds")
    bottom.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one minute instead of ten")
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to soak")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--churn", type=float, default=2.0, help="new one-off anonymous clients a second (0: none)")
    parser.add_argument("--scraper-every", type=float, default=15.0,
                        help="seconds between new scraping clients (0: none)")
    parser.add_argument("--state-ttl", type=float, default=120.0, help="the worker's RATEWARDEN_STATE_TTL_S")
    parser.add_argument("--cooldown", type=float, default=60.0, help="the worker's RATEWARDEN_ALERT_COOLDOWN_S")
    parser.add_argument("--penalty", type=float, default=60.0, help="how long a scraper is throttled (s)")
    parser.add_argument("--sweep", type=float, default=15.0,
                        help="the worker's RATEWARDEN_STATE_SWEEP_INTERVAL_S and RATEWARDEN_OVERRIDE_PURGE_INTERVAL_S")
    parser.add_argument("--plot", type=Path, default=Path("soak.png"), help="where to write the plot")
    args = parser.parse_args()
    seconds = 60.0 if args.quick else args.minutes * 60

    metrics_address = f"127.0.0.1:{free_port()}"
    lifetimes = {
        "RATEWARDEN_WORKER_METRICS_ADDRESS": metrics_address, "RATEWARDEN_STATE_TTL_S": str(args.state_ttl),
        "RATEWARDEN_ALERT_COOLDOWN_S": str(args.cooldown), "RATEWARDEN_STATE_SWEEP_INTERVAL_S": str(args.sweep),
        "RATEWARDEN_OVERRIDE_PURGE_INTERVAL_S": str(args.sweep),
        # the penalties table replaces the defaults: scraping throttles briefly, the rest only alert
        "RATEWARDEN_PENALTIES__SCRAPING__ACTION": "throttle",
        "RATEWARDEN_PENALTIES__SCRAPING__DURATION_S": str(args.penalty),
    }
    stack = Stack(data_dir=Path(tempfile.mkdtemp(prefix="soak-")), extra_env=lifetimes,
                  say=lambda text: console.print(f"[dim]{text}[/dim]"))
    stack.start()
    samples: list[dict] = []
    try:
        control = redis.Redis.from_url(stack.env["RATEWARDEN_REDIS_URL"])
        store = ApiKeyStore(control, stack.env["RATEWARDEN_API_KEY_SECRET"].encode())
        keys = [store.create(f"soak-{i}", tier="trusted")[0] for i in range(8)]
        load = Load(stack.urls["demo API"], keys, args.rate)
        churn = Churn(stack.urls["demo API"], args.churn, args.scraper_every)
        thread = threading.Thread(target=load.run, daemon=True)
        churn_thread = threading.Thread(target=churn.run, daemon=True)
        started = time.monotonic()
        thread.start()
        churn_thread.start()
        console.print(f"soaking at {args.rate:g} requests/s for {seconds:g} s ...")
        group = f"{stack.env.get('RATEWARDEN_CONSUMER_GROUP', 'ratewarden-stream')}-requests"
        partitions = int(stack.env["RATEWARDEN_TOPIC_PARTITIONS"])
        last_sent, last_stored, last_t = 0, 0, 0.0
        while (now := time.monotonic() - started) < seconds:
            time.sleep(args.every)
            now = time.monotonic() - started
            sent, stored = sum(load.statuses.values()) + sum(churn.statuses.values()), in_clickhouse(stack)
            sample = {"t": round(now, 1), "sent": sent, "stored": stored,
                      "rps": (sent - last_sent) / (now - last_t), "stored_rps": (stored - last_stored) / (now - last_t),
                      "lag": asyncio.run(lag(stack.env["RATEWARDEN_KAFKA_BOOTSTRAP"], group, partitions)),
                      "errors": sum(n for s, n in load.statuses.items() if not (isinstance(s, int) and s < 500)),
                      "rss_mb": {p.name: round(rss_mb(p.pid), 1) for p in stack.processes},
                      "clients_seen": churn.clients, "overrides": control.hlen(OVERRIDES_HASH),
                      "state": state_entries(f"http://{metrics_address}/metrics")}
            samples.append(sample)
            last_sent, last_stored, last_t = sent, stored, now
            console.print(f"t={sample['t']:6.0f}s  {sample['rps']:7.1f} req/s  lag {sample['lag']:6d}  "
                          f"errors {sample['errors']}  rss {sample['rss_mb']}  clients {churn.clients}  "
                          f"overrides {sample['overrides']}  state {sample['state']}")
        load.stop.set()
        churn.stop.set()
        thread.join(30)
        churn_thread.join(30)
        sent = sum(load.statuses.values()) + sum(churn.statuses.values())
        deadline = time.monotonic() + 60
        while (stored := in_clickhouse(stack)) < sent and time.monotonic() < deadline:
            time.sleep(1)
    finally:
        stack.stop()

    table = Table(title=f"soak: {seconds:g} s at {args.rate:g} requests/s")
    for column in ("sample", "t (s)", "req/s", "committed lag", "not in CH", "errors"):
        table.add_column(column)
    for name in samples[0]["rss_mb"]:
        table.add_column(f"{name} MB")
    for label, sample in (("start", samples[0]), ("middle", samples[len(samples) // 2]), ("end", samples[-1])):
        table.add_row(label, f"{sample['t']:.0f}", f"{sample['rps']:.1f}", str(sample["lag"]),
                      str(sample["sent"] - sample["stored"]), str(sample["errors"]),
                      *(f"{v:.1f}" for v in sample["rss_mb"].values()))
    console.print(table)
    tables = sorted({name for sample in samples for name in sample["state"]})
    sizes = Table(title="worker state tables (entries) and overrides in Redis, with new clients seen")
    for column in ("sample", "t (s)", "clients seen", *tables, "overrides"):
        sizes.add_column(column)
    for label, sample in (("start", samples[0]), ("middle", samples[len(samples) // 2]), ("end", samples[-1])):
        sizes.add_row(label, f"{sample['t']:.0f}", str(sample["clients_seen"]),
                      *(str(sample["state"].get(name, "-")) for name in tables), str(sample["overrides"]))
    sizes.add_row("max", "", "", *(str(max(s["state"].get(name, 0) for s in samples)) for name in tables),
                  str(max(s["overrides"] for s in samples)))
    console.print(sizes)
    plot(samples, args.plot)
    console.print(f"plot written to {args.plot}; {sent} requests sent, {stored} in ClickHouse, "
                  f"statuses {dict(load.statuses)}, churn statuses {dict(churn.statuses)}")
    middle = samples[len(samples) // 2]
    growth = {name: round(samples[-1]["rss_mb"][name] - samples[0]["rss_mb"][name], 1) for name in samples[0]["rss_mb"]}
    print(json.dumps({"seconds": seconds, "rate": args.rate, "sent": sent, "in_clickhouse": stored,
                      "errors": samples[-1]["errors"], "max_committed_lag": max(s["lag"] for s in samples),
                      "max_not_in_clickhouse": max(s["sent"] - s["stored"] for s in samples),
                      "rss_start_mb": samples[0]["rss_mb"], "rss_end_mb": samples[-1]["rss_mb"],
                      "rss_growth_mb": growth, "clients_seen": samples[-1]["clients_seen"],
                      "state_entries_middle": middle["state"], "state_entries_end": samples[-1]["state"],
                      "state_entries_max": {name: max(s["state"].get(name, 0) for s in samples) for name in tables},
                      "overrides_middle": middle["overrides"], "overrides_end": samples[-1]["overrides"],
                      "overrides_max": max(s["overrides"] for s in samples), "plot": str(args.plot)}))


if __name__ == "__main__":
    main()
