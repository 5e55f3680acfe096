"""Alert delivery to a Slack incoming webhook (Block Kit) and to generic webhooks (JSON body,
HMAC-SHA256 signature), with retries and backoff.

A sink that fails (connection error, timeout, 5xx, 408, 429) is retried with capped
exponential backoff until it accepts the alert; a sink that refuses it for good (any other
4xx) is reported so the alert can be kept on the undeliverable topic. Each attempt of one
alert version carries the same ``X-Ratewarden-Delivery`` id so receivers can drop repeats.
Webhook URLs are secrets: logs name sinks as ``slack`` or ``webhook[i]``, never by URL.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx

from ratewarden.enforcer.logs import get_logger
from ratewarden.enforcer.outage import OutageLog

from . import metrics
from .settings import StreamSettings

__all__ = ["slack_message", "sign", "verify", "AlertDeliverer", "SIGNATURE_HEADER", "DELIVERY_HEADER"]

SIGNATURE_HEADER = "X-Ratewarden-Signature"
DELIVERY_HEADER = "X-Ratewarden-Delivery"
_EMOJI = {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:"}

log = get_logger("ratewarden.delivery")
# httpx logs every request's URL at INFO, and webhook URLs are secrets
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)


def slack_message(alert: dict[str, Any]) -> dict[str, Any]:
    """A Block Kit message for ``alert`` (as published on the alerts topic)."""
    title = f"{alert['alert_type'].replace('_', ' ')}: {alert['client_id']}"
    evidence = "\n".join(f"• {k}: `{v}`" for k, v in alert["evidence"].items())
    penalty = alert.get("penalty")
    action = f"{penalty['action']} until <!date^{int(penalty['expires_at'])}^{{time}}|expiry>" if penalty else "none"
    return {
        "text": f"[{alert['severity']}] {title}",  # the notification's fallback text
        "blocks": [
            {"type": "header",
             "text": {"type": "plain_text", "text": f"{_EMOJI.get(alert['severity'], '')} {title}"[:150]}},
            {"type": "section", "fields": [
                {"type": "mrkdwn", "text": f"*Severity*\n{alert['severity']}"},
                {"type": "mrkdwn", "text": f"*Tier*\n{alert.get('tier') or '-'}"},
                {"type": "mrkdwn", "text": f"*Occurrences*\n{alert['occurrences']}"},
                {"type": "mrkdwn", "text": f"*Penalty*\n{action}"},
            ]},
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Evidence*\n{evidence}"[:3000]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Suggested action*\n{alert['suggested_action']}"}},
            {"type": "context", "elements": [
                {"type": "mrkdwn", "text": f"ratewarden · {alert['dedup_key']} · v{alert['version']}"},
            ]},
        ],
    }


def sign(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """``t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">``."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(body: bytes, header: str, secret: str, tolerance_s: float = 300.0) -> bool:
    """Check a signature header in constant time (for receivers, and the tests)."""
    try:
        parts = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(body, secret, timestamp), header)


@dataclass(frozen=True)
class _Sink:
    name: str
    url: str
    slack: bool
    outage: OutageLog  # one line when it starts failing, rarely while it fails, one when it accepts again


def _sink(name: str, url: str, slack: bool, setting: str) -> _Sink:
    return _Sink(name, url, slack, OutageLog(log, "alert_sink", sink=name, setting=setting))


class AlertDeliverer:
    """Delivers each alert to every configured sink; returns the names of sinks that refused it."""

    def __init__(self, settings: StreamSettings) -> None:
        self.settings = settings
        self.sinks = [_sink(f"webhook[{i}]", url.get_secret_value(), False, "RATEWARDEN_WEBHOOK_URLS")
                      for i, url in enumerate(settings.webhook_urls)]
        if settings.slack_webhook_url:
            self.sinks.insert(0, _sink("slack", settings.slack_webhook_url.get_secret_value(), True,
                                       "RATEWARDEN_SLACK_WEBHOOK_URL"))
        self.delivered = 0
        self.retries = 0
        self.refused = 0
        self._client: httpx.AsyncClient | None = None

    async def deliver(self, alert: dict[str, Any]) -> list[str]:
        if not self.sinks:
            return []
        client = self._client
        if client is None:
            client = self._client = httpx.AsyncClient(timeout=self.settings.delivery_timeout_s)
        results = await asyncio.gather(*(self._deliver_to(client, sink, alert) for sink in self.sinks))
        return [sink.name for sink, ok in zip(self.sinks, results, strict=True) if not ok]

    async def _deliver_to(self, client: httpx.AsyncClient, sink: _Sink, alert: dict[str, Any]) -> bool:
        body = json.dumps(slack_message(alert) if sink.slack else alert, separators=(",", ":")).encode()
        delivery_id = f"{alert['dedup_key']}:{alert['version']}"
        attempt = 0
        while True:
            headers = {"content-type": "application/json", DELIVERY_HEADER: delivery_id}
            if not sink.slack and self.settings.webhook_secret:
                headers[SIGNATURE_HEADER] = sign(body, self.settings.webhook_secret.get_secret_value())
            try:
                response = await client.post(sink.url, content=body, headers=headers)
                status = response.status_code
            except httpx.HTTPError as exc:
                status, error = None, type(exc).__name__
            else:
                error = f"HTTP {status}"
            if status is not None and 200 <= status < 300:
                sink.outage.succeeded()
                metrics.DELIVERY.labels("delivered").inc()
                self.delivered += 1
                return True
            if status is not None and 400 <= status < 500 and status not in (408, 429):
                sink.outage.succeeded()  # it answers: it is up, and refused this alert
                metrics.DELIVERY.labels("refused").inc()
                self.refused += 1
                log.error("alert_refused", sink=sink.name, status=status, alert=delivery_id)
                return False
            attempt += 1
            metrics.DELIVERY.labels("retried").inc()
            self.retries += 1
            delay = min(self.settings.delivery_max_backoff_s, 0.25 * 2 ** min(attempt, 16)) * random.uniform(0.8, 1.2)
            sink.outage.failed(error)
            await asyncio.sleep(delay)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
