"""Bounded alert delivery against real HTTP receivers: a dead webhook holds each of its alerts up
to the deadline and no other alert at all; what it never took is reported per sink; a receiver
verifies every webhook with the ``standardwebhooks`` package."""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from standardwebhooks import Webhook

from ratewarden.stream.delivery import AlertDeliverer, Failure
from ratewarden.stream.settings import StreamSettings

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
ORDER = itertools.count()  # one sequence for what the receivers and the sender see


class Receiver:
    """A webhook endpoint: verifies each request as a Standard Webhooks receiver would and answers
    ``status``, or never answers while ``hang`` is set (a dead receiver that still accepts connections)."""

    def __init__(self, status: int = 204, hang: bool = False) -> None:
        self.accepted: list[tuple[int, dict[str, Any]]] = []
        self.attempts = 0
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.attempts += 1
                if hang:
                    receiver.release.wait()
                    return
                alert = Webhook(SECRET).verify(body, dict(self.headers))  # raises on a bad signature
                receiver.accepted.append((next(ORDER), alert))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver, Receiver]]:
    dead, healthy, refusing = Receiver(hang=True), Receiver(), Receiver(status=410)
    yield dead, healthy, refusing
    for receiver in (dead, healthy, refusing):
        receiver.close()


def alert(n: int) -> dict[str, Any]:
    return {"dedup_key": f"scraping:ip:203.0.113.{n}", "alert_type": "scraping", "severity": "warning",
            "client_id": f"ip:203.0.113.{n}", "tier": "", "window_start": 0.0, "first_seen": 0.0, "last_seen": 0.0,
            "occurrences": 1, "version": 1, "evidence": {"n": n}, "suggested_action": "throttle", "penalty": None}


@pytest.mark.anyio
async def test_a_dead_receiver_delays_no_other_alert(receivers: tuple[Receiver, Receiver, Receiver]) -> None:
    dead, healthy, _ = receivers
    settings = StreamSettings(webhook_urls=f"{dead.url},{healthy.url}", webhook_secret=SECRET,
                              delivery_deadline_s=4.0, delivery_timeout_s=0.5, delivery_max_backoff_s=0.5)
    deliverer = AlertDeliverer(settings)
    finished: list[tuple[int, str, list[Failure]]] = []
    dispatched: list[int] = []

    async def finish_of(key: str) -> Any:
        async def finish(failures: list[Failure]) -> None:
            finished.append((next(ORDER), key, failures))
        return finish

    try:
        for n in range(20):  # as the deliver agent does: one alert after another
            await deliverer.dispatch(alert(n), await finish_of(alert(n)["dedup_key"]))
            dispatched.append(next(ORDER))
        while len(finished) < 20:
            await asyncio.sleep(0.05)
    finally:
        await deliverer.close()

    # every alert reached the healthy receiver before the dead one's first deadline passed: none
    # waited for it (and the agent was never held: all 20 were handed over before that too)
    first_given_up = min(at for at, _, _ in finished)
    assert sorted(a["dedup_key"] for _, a in healthy.accepted) == sorted(alert(n)["dedup_key"] for n in range(20))
    assert max(at for at, _ in healthy.accepted) < first_given_up
    assert max(dispatched) < first_given_up
    # the dead receiver was tried more than once per alert, then each alert was reported undelivered there
    assert dead.attempts > 20
    assert all(failures == [{"sink": "webhook[0]", "reason": "deadline: ReadTimeout"}] for _, _, failures in finished)
    assert (deliverer.delivered, deliverer.expired) == (20, 20)


@pytest.mark.anyio
async def test_a_refusal_is_reported_at_once_and_not_retried(receivers: tuple[Receiver, Receiver, Receiver]) -> None:
    _, healthy, refusing = receivers
    settings = StreamSettings(webhook_urls=f"{refusing.url},{healthy.url}", webhook_secret=SECRET,
                              delivery_deadline_s=60.0)
    deliverer = AlertDeliverer(settings)
    try:
        failures = await deliverer.deliver(alert(1))
    finally:
        await deliverer.close()
    assert failures == [{"sink": "webhook[0]", "reason": "refused: HTTP 410"}]
    assert refusing.attempts == 1 and len(healthy.accepted) == 1
