"""Every decision to Kafka: exact event counts, outages spilled and replayed, drops counted, hostile input."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from django.test import Client
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ratewarden.enforcer import Enforcer, EnforcerSettings, load_policy
from ratewarden.enforcer.asgi import RatewardenMiddleware
from ratewarden.enforcer.decision import Decision
from ratewarden.enforcer.django import reset_enforcer
from ratewarden.enforcer.events import SCHEMA_FILE, decode_event, encode_event, encode_request, json_schema, make_event
from ratewarden.enforcer.identity import Identity
from ratewarden.enforcer.publisher import EventPublisher
from ratewarden.examples.demo_fastapi.app import POLICY_FILE, create_app
from ratewarden.local import KafkaServer, create_topics

from .helpers import consume_events, make_enforcer

TOPIC = "ratewarden.requests"
GENEROUS = {"tiers": {"anonymous": {"rules": [
    {"name": "per-ip", "algorithm": "sliding_window_counter", "limit": 1_000_000, "period": "1m", "scope": ["ip"]}]},
    "free": {}}}


def _settings(redis_url: str, bootstrap: str, topic: str, tmp_path: Path, **extra: object) -> EnforcerSettings:
    return EnforcerSettings(redis_url=redis_url, kafka_bootstrap=bootstrap, kafka_topic=topic,
                            spill_dir=tmp_path / "spill", redis_budget_ms=2000, publish_linger_ms=5, **extra)


def _wait_settled(publisher: EventPublisher, events: int) -> None:
    """Until every event is spilled or dropped: nothing is left in flight to a dead broker.

    Restarting the in-memory test broker while librdkafka still retries a batch loses that
    batch on the broker side after it was acknowledged (a Tansu memory-storage quirk; a
    real Kafka's acknowledgement is durable), so the tests restart only once all is settled.
    """
    deadline = time.monotonic() + 30
    while True:
        stats = publisher.stats()
        if stats.published + stats.spilled + stats.dropped - stats.replayed >= events and not publisher.connected:
            return
        assert time.monotonic() < deadline, f"events not settled: {stats}"
        time.sleep(0.05)


def _wait_connected(publisher: EventPublisher) -> None:
    deadline = time.monotonic() + 10
    while not publisher.connected:
        assert time.monotonic() < deadline, "publisher did not connect"
        time.sleep(0.01)


def test_fastapi_demo_publishes_exactly_one_event_per_request(redis_sync: redis.Redis, redis_url: str,
                                                            kafka_bootstrap_url: str, topic: str,
                                                            tmp_path: Path) -> None:
    settings = _settings(redis_url, kafka_bootstrap_url, topic, tmp_path)
    app = create_app(Enforcer(load_policy(POLICY_FILE), settings))
    with TestClient(app, client=("203.0.113.30", 1)) as client:
        statuses = [client.get("/v1/items/2000").status_code]
        statuses += [client.get("/v1/items").status_code for _ in range(64)]  # 59 more pass, 5 are denied
        statuses.append(client.get("/healthz").status_code)
    events = consume_events(kafka_bootstrap_url, topic, expect=65)
    assert statuses.count(200) == 60 and statuses.count(429) == 5 and statuses.count(404) == 1
    assert len(events) == 65  # /healthz is exempt: no decision, no event
    assert len({e.event_id for e in events}) == 65
    allowed = [e for e in events if e.route == "GET /v1/items" and e.allowed]
    denied = [e for e in events if not e.allowed]
    assert len(allowed) == 59 and len(denied) == 5
    assert all(e.status == 429 and e.rule == "per-ip" and e.kind == "rate" and e.retry_after_s > 0 for e in denied)
    missing = [e for e in events if e.route == "GET /v1/items/{item_id}"]
    assert [(e.status, e.path, e.tier, e.client_id) for e in missing] == [(404, "/v1/items/2000", "anonymous",
                                                                             "ip:203.0.113.30")]
    first = allowed[0]
    assert first.schema == 2 and first.shadow_denied is None and first.ip == "203.0.113.30"
    assert first.cost == 1 and first.latency_ms > 0
    assert first.decided_at_us > 1_700_000_000_000_000 and first.service == "api" and first.method == "GET"


def test_django_demo_publishes_exactly_one_event_per_request(settings, redis_sync: redis.Redis, redis_url: str,
                                                           kafka_bootstrap_url: str, topic: str,
                                                           tmp_path: Path) -> None:
    settings.ROOT_URLCONF = "drfdemo.urls"
    settings.RATEWARDEN = {**settings.RATEWARDEN, "REDIS_URL": redis_url, "KAFKA_BOOTSTRAP": kafka_bootstrap_url,
                           "KAFKA_TOPIC": topic, "SPILL_DIR": str(tmp_path / "spill"), "REDIS_BUDGET_MS": 2000,
                           "PUBLISH_LINGER_MS": 5}
    client = Client(REMOTE_ADDR="203.0.113.31")
    statuses = [client.get("/v1/items").status_code for _ in range(62)]
    statuses.append(client.post("/v1/login", {"username": "a", "password": "x"},
                                content_type="application/json").status_code)
    reset_enforcer()  # closes the publisher: flushes
    events = consume_events(kafka_bootstrap_url, topic, expect=63)
    assert statuses[:60] == [200] * 60 and statuses[60:62] == [429, 429]
    assert len(events) == 63 and len({e.event_id for e in events}) == 63
    assert sorted(e.status for e in events) == sorted(statuses)
    login = [e for e in events if e.route == "POST /v1/login"]
    assert len(login) == 1 and login[0].status in (401, 429)


def _app_publishing_to(broker: KafkaServer, redis_url: str, tmp_path: Path,
                       **settings: object) -> tuple[FastAPI, EventPublisher]:
    """An app with one limited route whose events go to ``TOPIC`` on ``broker``."""
    enforcer = make_enforcer(redis_url, GENEROUS, kafka_bootstrap=broker.url, kafka_topic=TOPIC,
                             spill_dir=tmp_path / "spill", publish_linger_ms=5, **settings)
    publisher = EventPublisher(enforcer.settings)
    app = FastAPI()
    app.add_middleware(RatewardenMiddleware, enforcer=enforcer, publisher=publisher)
    app.get("/x")(lambda: {"ok": True})
    return app, publisher


def test_broker_outage_spills_and_replays_every_event(redis_sync: redis.Redis, redis_url: str,
                                                       tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ratewarden.publisher")
    with KafkaServer() as broker:
        create_topics(broker.url, {TOPIC: 4})
        app, publisher = _app_publishing_to(broker, redis_url, tmp_path, publish_queue_size=500)
        with TestClient(app) as client:
            _wait_connected(publisher)
            broker.kill()
            statuses = [client.get("/x").status_code for _ in range(5000)]
            assert statuses == [200] * 5000  # answered normally while Kafka is gone
            _wait_settled(publisher, 5000)
            assert publisher.stats().spilled > 0
            broker.restart()
            create_topics(broker.url, {TOPIC: 4})  # in-memory broker: it may come back empty
            events = consume_events(broker.url, TOPIC, expect=5000, timeout_s=60)
        stats = publisher.stats()
        ids = [e.event_id for e in events]
        assert len(ids) == len(set(ids)) == 5000, (len(ids), len(set(ids)), stats)
        assert stats.dropped == 0 and stats.replayed >= stats.spilled - 500
        latencies = sorted(e.latency_ms for e in events)
        # the request path never waited on Kafka: server-side latency stays within the Redis budget
        assert latencies[int(len(latencies) * 0.999)] < EnforcerSettings().redis_budget_ms
        assert not any((tmp_path / "spill").glob("*.jsonl")) or stats.spilled == stats.replayed
    # the outage is told once naming the brokers and their setting (not once per failed event or
    # connection attempt), then rarely while it lasts (10 s, 20 s, 40 s ...), then its end
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("ratewarden.publisher")]
    outage = [line for line in lines if line.startswith(("kafka_unavailable", "kafka_still_unavailable"))]
    print(f"\nKafka outage: {len(outage)} lines of {len(lines)} from the publisher: {[o[:40] for o in outage]}")
    assert outage[0].startswith("kafka_unavailable") and "RATEWARDEN_KAFKA_BOOTSTRAP" in outage[0]
    assert broker.url in outage[0] and len(outage) <= 4
    assert not any(line.startswith("FAIL ") for line in lines)  # librdkafka's line per connection attempt
    assert any(line.startswith("kafka_recovered") for line in lines)


def test_past_the_spill_cap_every_lost_event_is_counted(redis_sync: redis.Redis, redis_url: str,
                                                         tmp_path: Path) -> None:
    with KafkaServer() as broker:
        create_topics(broker.url, {TOPIC: 2})
        app, publisher = _app_publishing_to(broker, redis_url, tmp_path, publish_queue_size=10,
                                            spill_max_bytes=20_000, spill_segment_bytes=4096)
        with TestClient(app) as client:
            _wait_connected(publisher)
            broker.kill()
            assert all(client.get("/x").status_code == 200 for _ in range(300))
            _wait_settled(publisher, 300)
            broker.restart()
            create_topics(broker.url, {TOPIC: 2})
            stats = publisher.stats()
            assert stats.dropped > 0
            received = consume_events(broker.url, TOPIC, expect=300 - stats.dropped, timeout_s=60)
        assert len(received) + publisher.stats().dropped == 300
        assert len({e.event_id for e in received}) == len(received)


def test_hostile_fields_never_break_a_request_or_the_publisher(redis_sync: redis.Redis, redis_url: str,
                                                                kafka_bootstrap_url: str, topic: str,
                                                                tmp_path: Path) -> None:
    enforcer = make_enforcer(redis_url, GENEROUS, kafka_bootstrap=kafka_bootstrap_url, kafka_topic=topic,
                             spill_dir=tmp_path / "spill", publish_linger_ms=5)
    app = FastAPI()
    app.add_middleware(RatewardenMiddleware, enforcer=enforcer)
    app.get("/items/{name}")(lambda name: {"len": len(name)})
    with TestClient(app) as client:
        statuses = [
            client.get("/items/a", headers={"User-Agent": "x" * 10_000}).status_code,
            client.get("/items/b", headers={"User-Agent": b"\xff\xfe\xfd bad utf-8"}).status_code,
            client.get("/items/" + "p" * 20_000).status_code,
            client.get("/items/%FF%FE").status_code,
            client.get("/items/c", headers={"Authorization": "Bearer \udcff"[:-1] + "x" * 5000}).status_code,
        ]
    assert statuses == [200] * 5
    events = consume_events(kafka_bootstrap_url, topic, expect=5)
    assert len(events) == 5
    by_path = {e.path[:9]: e for e in events}
    assert len(by_path["/items/a"].user_agent) == 256
    assert by_path["/items/b"].user_agent.endswith("bad utf-8")
    assert len(by_path["/items/pp"].path) == 512
    for event in events:
        event.path.encode("utf-8")  # valid UTF-8 whatever came in


def _meaning(schema: Any) -> Any:
    """A JSON schema without its prose (titles, descriptions), which msgspec releases render differently."""
    if isinstance(schema, dict):
        return {key: _meaning(value) for key, value in schema.items() if key not in ("title", "description")}
    if isinstance(schema, list):
        return [_meaning(item) for item in schema]
    return schema


def test_json_schema_file_is_current() -> None:
    """The committed schema means what the event class says: fields, types, required, defaults
    (run ``python -m ratewarden.enforcer.events`` after changing the class)."""
    committed, generated = json.loads(SCHEMA_FILE.read_text()), json.loads(json.dumps(json_schema()))
    assert _meaning(committed) == _meaning(generated)
    assert "event_id" in committed["$defs"]["RequestEvent"]["required"]


def test_a_version_1_event_still_decodes() -> None:
    """Schema 2 only added ``shadow_denied`` (optional): events already in Kafka keep decoding."""
    v1 = {"schema": 1, "event_id": "x-1", "decided_at_us": 1, "host_time_us": 2, "service": "api", "instance": "i",
          "client_id": "ip:192.0.2.1", "ip": "192.0.2.1", "tier": "anonymous", "method": "GET", "route": "GET /x",
          "path": "/x", "cost": 1, "allowed": True, "remaining": 3, "retry_after_s": 0.0, "degraded": False,
          "local": False, "status": 200, "latency_ms": 1.5}
    event = decode_event(json.dumps(v1).encode())
    assert event.schema == 1 and event.shadow_denied is None and event.client_id == "ip:192.0.2.1"


def test_the_publishers_encoding_is_the_events_own() -> None:
    """What the publisher sends (``encode_request``, built positionally) is, field for field and in
    the same order, ``encode_event(make_event(...))``: only the event id, unique per event, differs."""
    cases = [
        (Decision(True, "paid", "GET /v1/items/{item_id}", "k:key_1", rule="per-minute", remaining=41,
                  retry_after_s=0.0, now_us=1_795_474_800_123_456, shadow_denied="strict"),
         Identity("k:key_1", "paid", "203.0.113.9", key_id="key_1", user="alice"), "/v1/items/7", "sdk/1 é"),
        (Decision(False, "anonymous", "POST /v1/login", "ip:2001:db8::", rule="per-ip", kind="rate",
                  retry_after_s=12.3456, degraded=True, local=True),
         Identity("ip:2001:db8::", "anonymous", "2001:db8::1"), "/v1/login/" + "p" * 600, None),
    ]
    for decision, identity, path, user_agent in cases:
        facts = {"method": "GET", "path": path, "user_agent": user_agent, "status": 429, "latency_ms": 1.23456,
                 "service": "api", "instance": "i-1", "host_time_us": 1_795_474_800_200_000}
        sent = json.loads(encode_request(decision, identity, *facts.values()))
        built = json.loads(encode_event(make_event(decision, identity, **facts)))
        assert list(sent) == list(built)
        assert sent["event_id"] != built["event_id"]
        assert {**sent, "event_id": ""} == {**built, "event_id": ""}
        assert decode_event(encode_request(decision, identity, *facts.values())).client_id == identity.client_id
