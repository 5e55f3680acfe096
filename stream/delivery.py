"""Alert delivery to a Slack incoming webhook and to generic webhooks (Standard Webhooks), each
attempt bounded and each alert bounded by a deadline.

A sink that fails (connection error, timeout, 5xx, 408, 429) is retried with capped exponential
backoff and jitter until it accepts the alert or ``RATEWARDEN_DELIVERY_DEADLINE_S`` has passed
since the first attempt; a sink that refuses it for good (any other 4xx) is not retried. Either
way the caller learns which sinks did not take the alert, to keep it on the undeliverable topic.
Alerts are delivered side by side (:meth:`AlertDeliverer.dispatch`), so a dead sink delays
only its own alerts, never by more than the deadline.

Webhook URLs are secrets: logs name sinks as ``slack`` or ``webhook[i]``, never by URL.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from standardwebhooks import Webhook
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from ratewarden.enforcer.logs import get_logger
from ratewarden.enforcer.outage import OutageLog

from . import metrics
from .alert_messages import slack_message, webhook_body, webhook_headers, webhook_id
from .settings import StreamSettings

__all__ = ["AlertDeliverer", "Failure"]

log = get_logger("ratewarden.delivery")
# httpx logs every request's URL at INFO, and webhook URLs are secrets
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)

Failure = dict[str, str]  # {"sink": "webhook[0]", "reason": "refused: HTTP 410" | "deadline: ..."}
Finish = Callable[[list[Failure]], Awaitable[None]]


class _NotAccepted(Exception):
    """An attempt the sink may accept if tried again (connection error, timeout, 5xx, 408, 429)."""


class _Refused(Exception):
    """The sink answered that it will never take this alert (a 4xx other than 408 and 429)."""


@dataclass(frozen=True)
class _Sink:
    name: str
    url: str
    slack: bool
    outage: OutageLog  # one line when it starts failing, rarely while it fails, one when it accepts again


def _sink(name: str, url: str, slack: bool, setting: str) -> _Sink:
    return _Sink(name, url, slack, OutageLog(log, "alert_sink", sink=name, setting=setting))


class AlertDeliverer:
    """Delivers alerts to every configured sink."""

    def __init__(self, settings: StreamSettings) -> None:
        self.settings = settings
        self.sinks = [_sink(f"webhook[{i}]", url.get_secret_value(), False, "RATEWARDEN_WEBHOOK_URLS")
                      for i, url in enumerate(settings.webhook_urls)]
        if settings.slack_webhook_url:
            self.sinks.insert(0, _sink("slack", settings.slack_webhook_url.get_secret_value(), True,
                                       "RATEWARDEN_SLACK_WEBHOOK_URL"))
        secret = settings.webhook_secret
        self._signer = Webhook(secret.get_secret_value()) if secret is not None else None
        self.delivered = 0
        self.retries = 0
        self.refused = 0
        self.expired = 0  # given up on at the deadline
        self._client: httpx.AsyncClient | None = None
        self._slots = asyncio.Semaphore(settings.delivery_concurrency)
        self._running: set[asyncio.Task[None]] = set()

    async def dispatch(self, alert: dict[str, Any], finish: Finish) -> None:
        """Start delivering ``alert`` as soon as fewer than ``delivery_concurrency`` deliveries are
        running, and return; ``finish(failures)`` is awaited once every sink has taken it or
        been given up on."""
        await self._slots.acquire()
        task = asyncio.get_running_loop().create_task(self._deliver_then(alert, finish))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _deliver_then(self, alert: dict[str, Any], finish: Finish) -> None:
        try:
            await finish(await self.deliver(alert))
        finally:
            self._slots.release()

    async def deliver(self, alert: dict[str, Any]) -> list[Failure]:
        """Deliver ``alert`` to every sink at once; returns the sinks that did not take it, and why."""
        if not self.sinks:
            return []
        client = self._client
        if client is None:
            client = self._client = httpx.AsyncClient(timeout=self.settings.delivery_timeout_s)
        reasons = await asyncio.gather(*(self._deliver_to(client, sink, alert) for sink in self.sinks))
        return [{"sink": sink.name, "reason": reason}
                for sink, reason in zip(self.sinks, reasons, strict=True) if reason is not None]

    async def _deliver_to(self, client: httpx.AsyncClient, sink: _Sink, alert: dict[str, Any]) -> str | None:
        """None once ``sink`` accepted ``alert``; else why it did not, by the deadline."""
        s = self.settings
        body = json.dumps(slack_message(alert), separators=(",", ":")).encode() if sink.slack else webhook_body(alert)
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_NotAccepted), stop=stop_after_delay(s.delivery_deadline_s),
            wait=wait_exponential(multiplier=0.25, max=s.delivery_max_backoff_s) + wait_random(0, 0.25),
            before_sleep=self._count_retry, reraise=True)
        last_error = "no answer"
        try:
            async with asyncio.timeout(s.delivery_deadline_s):  # the last wait or attempt may not run past it
                async for attempt in retrying:
                    with attempt:
                        try:
                            await self._attempt(client, sink, alert, body)
                        except _NotAccepted as exc:
                            last_error = str(exc)  # the deadline may strike in the wait that follows
                            raise
        except _Refused as exc:
            metrics.DELIVERY.labels("refused").inc()
            self.refused += 1
            log.error("alert_refused", sink=sink.name, error=str(exc), alert=webhook_id(alert))
            return f"refused: {exc}"
        except (_NotAccepted, TimeoutError):
            metrics.DELIVERY.labels("expired").inc()
            self.expired += 1
            log.error("alert_undeliverable", sink=sink.name, deadline_s=s.delivery_deadline_s, error=last_error,
                      alert=webhook_id(alert))
            return f"deadline: {last_error}"
        metrics.DELIVERY.labels("delivered").inc()
        self.delivered += 1
        return None

    async def _attempt(self, client: httpx.AsyncClient, sink: _Sink, alert: dict[str, Any], body: bytes) -> None:
        headers = ({"content-type": "application/json"} if sink.slack
                   else webhook_headers(alert, body, self._signer))  # signed afresh: the timestamp is checked
        try:
            status = (await client.post(sink.url, content=body, headers=headers)).status_code
        except httpx.HTTPError as exc:
            sink.outage.failed(type(exc).__name__)  # the class only: a message may hold the URL
            raise _NotAccepted(type(exc).__name__) from None
        if 200 <= status < 300:
            sink.outage.succeeded()
            return
        if 400 <= status < 500 and status not in (408, 429):
            sink.outage.succeeded()  # it answers: it is up, and refused this alert
            raise _Refused(f"HTTP {status}")
        sink.outage.failed(f"HTTP {status}")
        raise _NotAccepted(f"HTTP {status}")

    def _count_retry(self, state: RetryCallState) -> None:
        metrics.DELIVERY.labels("retried").inc()
        self.retries += 1

    async def close(self) -> None:
        """Stop deliveries in flight (their alerts stay unacknowledged, for the next worker) and the client."""
        for task in list(self._running):
            task.cancel()
        if self._running:
            await asyncio.wait(self._running)
        if self._client is not None:
            await self._client.aclose()
