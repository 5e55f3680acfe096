"""The stream worker end to end, on a real broker (Tansu), Redis (Valkey) and ClickHouse (chDB):
a labelled scenario is detected without false alarms, alerts reach Slack and a webhook
once each through an outage (signed per Standard Webhooks), a dead webhook's alerts land on the
undeliverable topic at the deadline, undecodable events go to the dead letters, and the usage
totals in ClickHouse are exact."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from ratewarden.local import free_port
from ratewarden.stream.alert_messages import webhook_id
from ratewarden.stream.simulate import EXPECTED_ALERT, events, publish, scenario

from .stream_support import (
    committed_and_ends,
    query_clickhouse,
    read_topic,
    start_worker,
    wait_processed,
    worker_env,
)

SECRET = "whsec_" + base64.b64encode(b"webhook-signing-secret-for-tests").decode()
DEADLINE_S = 15.0  # past the receivers' outage (6 s) and a backoff step, so only the dead webhook expires
MALFORMED = [b"not json", b'{"schema": 1}', b'{"event_id": 5}', b"\xff\xfe"]


@dataclass
class Receiver:
    """A local HTTP endpoint standing in for Slack or a webhook: answers 500 for ``fail_s``
    after the first request, then 200, and records everything."""

    fail_s: float
    hang_s: float = 0.0  # while failing, answer only after this long (past the sender's timeout)
    requests: list[dict[str, Any]] = field(default_factory=list)
    first_at: float | None = None

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                now = time.monotonic()
                receiver.first_at = receiver.first_at or now
                status = 500 if now - receiver.first_at < receiver.fail_s else 200
                if status == 500 and receiver.hang_s:
                    time.sleep(receiver.hang_s)
                receiver.requests.append({"headers": dict(self.headers), "body": body, "status": status})
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hook"

    def accepted(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["status"] == 200]


@dataclass
class Run:
    env: dict[str, str]
    clients: list[Any]
    sent: int
    alerts: list[dict[str, Any]]
    dead_letters: list[Any]
    undeliverable: list[dict[str, Any]]
    alerts_acknowledged: tuple[dict[int, int], dict[int, int]]  # committed and end offsets of the alerts topic
    slack: Receiver
    webhook: Receiver
    dead_url: str


@pytest.fixture(scope="module")
def run(kafka_bootstrap_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    workdir = tmp_path_factory.mktemp("stream")
    slack, webhook = Receiver(fail_s=6.0), Receiver(fail_s=6.0, hang_s=1.5)  # the webhook times out
    dead_url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    env = worker_env(kafka_bootstrap_url, redis_url, workdir, RATEWARDEN_SLACK_WEBHOOK_URL=slack.url,
                     RATEWARDEN_WEBHOOK_URLS=f"{webhook.url},{dead_url}", RATEWARDEN_WEBHOOK_SECRET=SECRET,
                     RATEWARDEN_DELIVERY_MAX_BACKOFF_S="2", RATEWARDEN_DELIVERY_TIMEOUT_S="1",
                     RATEWARDEN_DELIVERY_DEADLINE_S=str(DEADLINE_S))
    clients = scenario(legit=200, per_abuse=3)
    start_us = int(time.time() // 60 * 60 - 6 * 60) * 1_000_000
    sent = asyncio.run(publish(kafka_bootstrap_url, env["RATEWARDEN_KAFKA_TOPIC"], events(clients, 5, start_us)))
    asyncio.run(_publish_raw(kafka_bootstrap_url, env["RATEWARDEN_KAFKA_TOPIC"], MALFORMED))
    worker = start_worker(env, workdir)
    try:
        wait_processed(env)
        expected = sum(1 for c in clients if c.label != "legit")
        alerts = [json.loads(r.value) for r in read_topic(kafka_bootstrap_url, env["RATEWARDEN_ALERTS_TOPIC"],
                                                          idle_s=8, expect=None)]
        assert len(alerts) >= expected, alerts
        deadline = time.monotonic() + 60
        while min(len(slack.accepted()), len(webhook.accepted())) < len(alerts):
            assert time.monotonic() < deadline, "alerts not delivered"
            time.sleep(0.2)
        undeliverable = [json.loads(r.value) for r in read_topic(
            kafka_bootstrap_url, env["RATEWARDEN_UNDELIVERABLE_TOPIC"], expect=len(alerts), linger_s=1,
            timeout_s=DEADLINE_S + 60)]
    finally:
        worker.stop(timeout_s=15)
    dead = read_topic(kafka_bootstrap_url, env["RATEWARDEN_DEAD_LETTER_TOPIC"], expect=len(MALFORMED), timeout_s=10)
    acknowledged = committed_and_ends(env, env["RATEWARDEN_ALERTS_TOPIC"], env["RATEWARDEN_CONSUMER_GROUP"])
    yield Run(env, clients, sent, alerts, dead, undeliverable, acknowledged, slack, webhook, dead_url)


async def _publish_raw(bootstrap: str, topic: str, values: list[bytes]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=b"broken")
    finally:
        await producer.stop()


def test_every_abusive_client_is_caught_and_no_legitimate_one(run: Run) -> None:
    found: dict[str, set[str]] = {}
    for alert in run.alerts:
        found.setdefault(alert["client_id"], set()).add(alert["alert_type"])
    table: Counter[tuple[str, str]] = Counter()
    for client in run.clients:
        if client.label == "legit":
            table[("legit", "alerted" if client.client_id in found else "quiet")] += 1
        else:
            right = EXPECTED_ALERT[client.label] in found.get(client.client_id, set())
            table[(client.label, "detected" if right else "missed")] += 1
    print("\nconfusion table (pattern, outcome): count")
    for (pattern, outcome), count in sorted(table.items()):
        print(f"  {pattern:20} {outcome:9} {count}")
    assert table[("legit", "quiet")] == 200 and table[("legit", "alerted")] == 0
    for pattern in EXPECTED_ALERT:
        assert table[(pattern, "detected")] == 3, (pattern, table)
    assert {a["client_id"] for a in run.alerts} <= {c.client_id for c in run.clients if c.label != "legit"}


def test_a_sustained_attack_is_one_alert_per_client_and_type(run: Run) -> None:
    keys = Counter(a["dedup_key"] for a in run.alerts)
    assert max(keys.values()) == 1, keys  # 5 minutes of attack, no repeats within the cooldown
    for alert in run.alerts:
        assert alert["evidence"] and alert["suggested_action"] and alert["severity"] in ("info", "warning", "critical")


def test_alerts_reach_slack_and_the_webhook_once_each_after_an_outage(run: Run) -> None:
    """Slack answers 500 for a while; the webhook times out (answers after the sender gave up)."""
    for receiver in (run.slack, run.webhook):
        assert any(r["status"] == 500 for r in receiver.requests)  # the outage happened
    versions = sorted(f"{a['dedup_key']} · v{a['version']}" for a in run.alerts)
    slack = [json.loads(r["body"]) for r in run.slack.accepted()]
    assert sorted(m["blocks"][-1]["elements"][0]["text"].removeprefix("ratewarden · ") for m in slack) == versions
    for request, message in zip(run.slack.accepted(), slack, strict=True):
        assert message["text"] and message["blocks"][0]["type"] == "header"
        assert {b["type"] for b in message["blocks"]} <= {"header", "section", "context"}
        assert "webhook-signature" not in request["headers"]
    accepted = [r["headers"]["webhook-id"] for r in run.webhook.accepted()]
    assert sorted(accepted) == sorted(webhook_id(a) for a in run.alerts)  # once each: the id is per version


def test_a_receiver_verifies_each_webhook_with_the_standardwebhooks_package(run: Run) -> None:
    receiver = Webhook(SECRET)
    for request in run.webhook.requests:  # every attempt is signed, the failed ones too
        alert = receiver.verify(request["body"], request["headers"])
        assert request["headers"]["webhook-id"] == webhook_id(alert)
        with pytest.raises(WebhookVerificationError):
            receiver.verify(request["body"] + b" ", request["headers"])


def test_a_dead_webhooks_alerts_land_on_the_undeliverable_topic(run: Run) -> None:
    """Nothing listens at the third sink: each alert is tried until the deadline, then published
    to the undeliverable topic naming that sink (never its URL); the others took every alert."""
    assert sorted(u["dedup_key"] for u in run.undeliverable) == sorted(a["dedup_key"] for a in run.alerts)
    for record in run.undeliverable:
        assert record["undelivered"] == [{"sink": "webhook[1]", "reason": "deadline: ConnectError"}]
        assert run.dead_url not in json.dumps(record)


def test_each_alert_is_acknowledged_once_its_deliveries_ended(run: Run) -> None:
    """Deliveries run side by side and acknowledge their alert by hand when done: every one was,
    so the deliver agent's group committed the whole alerts topic."""
    committed, ends = run.alerts_acknowledged
    assert committed == ends and sum(ends.values()) == len(run.alerts)


def test_malformed_events_go_to_the_dead_letters_with_a_reason(run: Run) -> None:
    assert sorted(r.value for r in run.dead_letters) == sorted(MALFORMED)
    for record in run.dead_letters:
        headers = dict(record.headers)
        assert headers["reason"] and headers["source"].startswith(run.env["RATEWARDEN_KAFKA_TOPIC"].encode())


def test_usage_alerts_and_penalties_in_clickhouse(run: Run, tmp_path: Path) -> None:
    url, db = run.env["RATEWARDEN_CLICKHOUSE_URL"], "ratewarden"
    rows = query_clickhouse(url, f"SELECT sum(requests), count(DISTINCT client_id) FROM {db}.usage_minute")
    assert rows == [[run.sent, len(run.clients)]]
    hourly = query_clickhouse(url, f"SELECT sum(requests) FROM {db}.usage_hour")
    assert hourly == [[run.sent]]
    alerts = query_clickhouse(url, f"SELECT dedup_key FROM {db}.alerts FINAL")
    assert sorted(r[0] for r in alerts) == sorted(a["dedup_key"] for a in run.alerts)
    penalties = query_clickhouse(url, f"SELECT client_id, action, detector FROM {db}.penalties")
    penalised = {a["client_id"] for a in run.alerts if a["penalty"]}
    assert {r[0] for r in penalties} == penalised and penalised
    assert all(r[1] in ("throttle", "block") for r in penalties)


def test_no_secret_or_webhook_url_in_the_worker_log(run: Run) -> None:
    log = (Path(run.env["RATEWARDEN_DATA_DIR"]).parent / "worker" / "stream-worker.log").read_text(errors="replace")
    assert "alert_sink_unavailable sink=slack" in log  # the outage was logged, by sink name
    assert "error=ReadTimeout" in log and "sink=webhook[0]" in log
    for secret in (SECRET, run.slack.url, run.webhook.url, f":{run.slack.server.server_port}",
                   f":{run.webhook.server.server_port}"):
        assert secret not in log
