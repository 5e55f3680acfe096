"""Labelled synthetic traffic: request events for legitimate clients of every tier and for
each abuse pattern, with a ground-truth label per client (``ratewarden simulate``).

Events carry a simulated clock starting at ``start_us`` so minutes of traffic can be
produced in seconds; ``events()`` is pure and seeded (the same seed, the same events).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from ratewarden.enforcer.events import RequestEvent, encode_event

__all__ = ["SimClient", "scenario", "events", "publish"]

LEGIT_PATTERNS = ("steady", "diurnal", "bursty", "heavy")
ABUSE_PATTERNS = ("retry_storm", "credential_stuffing", "scraping", "key_sharing", "traffic_spike")
# which alert type a pattern should raise
EXPECTED_ALERT = {"retry_storm": "retry_storm", "credential_stuffing": "credential_stuffing",
                  "scraping": "scraping", "key_sharing": "key_sharing", "traffic_spike": "traffic_spike"}


@dataclass(frozen=True)
class SimClient:
    client_id: str
    tier: str
    pattern: str  # one of LEGIT_PATTERNS or ABUSE_PATTERNS
    rate_per_min: float
    ip: str

    @property
    def label(self) -> str:
        return "legit" if self.pattern in LEGIT_PATTERNS else self.pattern


def scenario(legit: int = 200, per_abuse: int = 3, seed: int = 7) -> list[SimClient]:
    """``legit`` legitimate clients over every tier and pattern, ``per_abuse`` of each abuse pattern."""
    rng = random.Random(seed)
    clients = []
    tiers = ("free", "paid", "trusted")
    for i in range(legit):
        pattern = LEGIT_PATTERNS[i % len(LEGIT_PATTERNS)]
        tier = tiers[i % len(tiers)]
        rate = {"steady": 20, "diurnal": 30, "bursty": 15, "heavy": 600}[pattern] * rng.uniform(0.7, 1.3)
        clients.append(SimClient(f"k:legit{i:04d}", tier, pattern, rate, f"198.51.{i // 250}.{i % 250 + 1}"))
    for pattern in ABUSE_PATTERNS:
        for j in range(per_abuse):
            ip = f"203.0.{ABUSE_PATTERNS.index(pattern) * 10 + j}.7"
            client_id = f"ip:{ip}" if pattern in ("credential_stuffing", "scraping") else f"k:{pattern}{j}"
            rate = {"retry_storm": 120, "credential_stuffing": 40, "scraping": 90, "key_sharing": 60,
                    "traffic_spike": 40}[pattern]
            clients.append(SimClient(client_id, "free", pattern, rate, ip))
    return clients


def _requests_in_minute(client: SimClient, minute: int, minutes: int, rng: random.Random) -> int:
    rate = client.rate_per_min
    if client.pattern == "diurnal":
        rate *= 1 + 0.5 * math.sin(2 * math.pi * minute / max(minutes, 1))
    elif client.pattern == "bursty":
        rate *= 3 if minute % 4 == 0 else 0.4
    elif client.pattern == "traffic_spike" and minute == minutes - 1:
        rate *= 20  # quiet baseline, then a surge in the last minute
    return max(0, int(rng.gauss(rate, math.sqrt(rate))))


def _fields(client: SimClient, i: int, rng: random.Random) -> dict:
    route, path, method, status = "GET /v1/items/{item_id}", f"/v1/items/{rng.randint(1, 50)}", "GET", 200
    ip, allowed, retry_after = client.ip, True, 0.0
    pattern = client.pattern
    if pattern == "retry_storm":
        allowed = i % 10 == 0
        status, retry_after = (200, 0.0) if allowed else (429, 30.0)
    elif pattern == "credential_stuffing":
        route, path, method, status = "POST /v1/login", "/v1/login", "POST", 401
    elif pattern == "scraping":
        item = 900 + i
        path, status = f"/v1/items/{item}", 200 if item <= 1000 else 404
    elif pattern == "key_sharing":
        ip = f"{rng.randint(11, 220)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    elif rng.random() < 0.02:
        route, path, method = "POST /v1/login", "/v1/login", "POST"  # legit users log in, and succeed
    return {"route": route, "path": path, "method": method, "status": status, "ip": ip, "allowed": allowed,
            "retry_after_s": retry_after}


def events(clients: list[SimClient], minutes: int, start_us: int, seed: int = 7) -> Iterator[RequestEvent]:
    """Every client's events for ``minutes`` simulated minutes, in time order within each minute."""
    rng = random.Random(seed)
    ids = itertools.count()
    for minute in range(minutes):
        batch = []
        for client in clients:
            n = _requests_in_minute(client, minute, minutes, rng)
            for i in range(n):
                at = start_us + minute * 60_000_000 + int((i + rng.random()) / max(n, 1) * 60_000_000)
                f = _fields(client, minute * 10_000 + i, rng)
                batch.append(RequestEvent(
                    event_id=f"sim-{seed}-{next(ids)}", decided_at_us=at, host_time_us=at, service="sim",
                    instance="sim", client_id=client.client_id, key_id=client.client_id[2:]
                    if client.client_id.startswith("k:") else None, ip=f["ip"], tier=client.tier,
                    method=f["method"], route=f["route"], path=f["path"], cost=1, allowed=f["allowed"],
                    remaining=0 if not f["allowed"] else 10, retry_after_s=f["retry_after_s"], degraded=False,
                    local=False, status=f["status"], latency_ms=round(rng.uniform(1, 20), 3),
                    rule=None if f["allowed"] else "per-minute", kind=None if f["allowed"] else "rate"))
        batch.sort(key=lambda e: e.decided_at_us)
        yield from batch


async def publish(bootstrap: str, topic: str, stream: Iterator[RequestEvent], rate_per_s: float | None = None) -> int:
    """Write events to Kafka keyed by client id (at ``rate_per_s``, or as fast as possible), partitioned
    as the enforcer's publisher does (murmur2); raises ``RuntimeError`` if any was not delivered."""
    from confluent_kafka import Producer

    failed: list[str] = []

    def delivered(err: object, msg: object) -> None:
        if err is not None:
            failed.append(str(err))

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": False,
                         "linger.ms": 20, "partitioner": "murmur2_random", "on_delivery": delivered})
    loop = asyncio.get_running_loop()
    sent = 0
    started = loop.time()
    for event in stream:
        while True:
            try:
                producer.produce(topic, encode_event(event), event.client_id)
                break
            except BufferError:  # librdkafka's queue is full: let it drain
                await loop.run_in_executor(None, producer.poll, 0.05)
        sent += 1
        if sent % 1000 == 0:
            producer.poll(0)  # serve delivery reports
            await asyncio.sleep(0)  # and let whatever else runs on this loop (a worker, in tests) have a turn
        if rate_per_s and sent % 100 == 0:
            ahead = sent / rate_per_s - (loop.time() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
    left = await loop.run_in_executor(None, producer.flush, 60)
    if failed or left:
        raise RuntimeError(f"{len(failed) + left} of {sent} events not delivered: {failed[:1]}")
    return sent
