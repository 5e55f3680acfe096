"""Soak benchmark: the whole embedded pipeline (as ``ratewarden up``) under a steady request
rate for a long time. Samples every few seconds: request rate, errors, the stream's consumer
lag, events in ClickHouse, and the memory (RSS) of every process. Prints a table (start,
middle, end) and writes a plot of lag and rates over time.

    python bench/soak.py [--quick] [--minutes 10] [--rate 200] [--plot soak.png]

Asserts nothing. The last line is one JSON object with the figures.
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
from rich.console import Console
from rich.table import Table

from ratewarden.enforcer import ApiKeyStore
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
    parser.add_argument("--plot", type=Path, default=Path("soak.png"), help="where to write the plot")
    args = parser.parse_args()
    seconds = 60.0 if args.quick else args.minutes * 60

    stack = Stack(data_dir=Path(tempfile.mkdtemp(prefix="soak-")), say=lambda text: console.print(f"[dim]{text}[/dim]"))
    stack.start()
    samples: list[dict] = []
    try:
        store = ApiKeyStore(redis.Redis.from_url(stack.env["RATEWARDEN_REDIS_URL"]),
                            stack.env["RATEWARDEN_API_KEY_SECRET"].encode())
        keys = [store.create(f"soak-{i}", tier="trusted")[0] for i in range(8)]
        load = Load(stack.urls["demo API"], keys, args.rate)
        thread = threading.Thread(target=load.run, daemon=True)
        started = time.monotonic()
        thread.start()
        console.print(f"soaking at {args.rate:g} requests/s for {seconds:g} s ...")
        group = f"{stack.env.get('RATEWARDEN_CONSUMER_GROUP', 'ratewarden-stream')}-requests"
        partitions = int(stack.env["RATEWARDEN_TOPIC_PARTITIONS"])
        last_sent, last_stored, last_t = 0, 0, 0.0
        while (now := time.monotonic() - started) < seconds:
            time.sleep(args.every)
            now = time.monotonic() - started
            sent, stored = sum(load.statuses.values()), in_clickhouse(stack)
            sample = {"t": round(now, 1), "sent": sent, "stored": stored,
                      "rps": (sent - last_sent) / (now - last_t), "stored_rps": (stored - last_stored) / (now - last_t),
                      "lag": asyncio.run(lag(stack.env["RATEWARDEN_KAFKA_BOOTSTRAP"], group, partitions)),
                      "errors": sum(n for s, n in load.statuses.items() if not (isinstance(s, int) and s < 500)),
                      "rss_mb": {p.name: round(rss_mb(p.pid), 1) for p in stack.processes}}
            samples.append(sample)
            last_sent, last_stored, last_t = sent, stored, now
            console.print(f"t={sample['t']:6.0f}s  {sample['rps']:7.1f} req/s  lag {sample['lag']:6d}  "
                          f"errors {sample['errors']}  rss {sample['rss_mb']}")
        load.stop.set()
        thread.join(30)
        sent = sum(load.statuses.values())
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
    plot(samples, args.plot)
    console.print(f"plot written to {args.plot}; {sent} requests sent, {stored} in ClickHouse, "
                  f"statuses {dict(load.statuses)}")
    growth = {name: round(samples[-1]["rss_mb"][name] - samples[0]["rss_mb"][name], 1) for name in samples[0]["rss_mb"]}
    print(json.dumps({"seconds": seconds, "rate": args.rate, "sent": sent, "in_clickhouse": stored,
                      "errors": samples[-1]["errors"], "max_committed_lag": max(s["lag"] for s in samples),
                      "max_not_in_clickhouse": max(s["sent"] - s["stored"] for s in samples),
                      "rss_start_mb": samples[0]["rss_mb"], "rss_end_mb": samples[-1]["rss_mb"],
                      "rss_growth_mb": growth, "plot": str(args.plot)}))


if __name__ == "__main__":
    main()
