"""What sinks receive: Slack text escaped per Slack's rules, webhooks signed per Standard Webhooks
(checked with the ``standardwebhooks`` package, as a receiver would)."""

from __future__ import annotations

import base64
import datetime as dt
import os
import re
from typing import Any

import pytest
from pydantic import ValidationError
from standardwebhooks import Webhook, WebhookVerificationError

from ratewarden.stream.alert_messages import slack_escape, slack_message, webhook_body, webhook_headers, webhook_id
from ratewarden.stream.settings import StreamSettings

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


def alert(**changes: Any) -> dict[str, Any]:
    base = {"dedup_key": "scraping:k:a&b<c>", "alert_type": "scraping", "severity": "warning",
            "client_id": "k:a&b<c>", "tier": "free<x>", "window_start": 1.0, "first_seen": 1.0, "last_seen": 2.0,
            "occurrences": 3, "version": 2, "evidence": {"path<": "<https://evil.example|click> & more"},
            "suggested_action": "throttle <!channel>", "penalty": None}
    return base | changes


def mrkdwn_texts(message: dict[str, Any]) -> list[str]:
    """The fallback text and every mrkdwn text of a Block Kit message."""
    texts = [message["text"]]
    for block in message["blocks"]:
        parts = [block.get("text"), *block.get("fields", []), *block.get("elements", [])]
        texts += [part["text"] for part in parts if part and part["type"] == "mrkdwn"]
    return texts


def test_slack_text_is_escaped_so_a_client_id_cannot_link_or_mention() -> None:
    assert slack_escape("a&b<c>") == "a&amp;b&lt;c&gt;"
    message = slack_message(alert())
    texts = mrkdwn_texts(message)
    assert len(texts) == 8
    for text in texts:  # nothing but Slack's three escapes is left of & < >
        assert not set("&<>") & set(re.sub(r"&(amp|lt|gt);", "", text)), text
    assert "k:a&amp;b&lt;c&gt;" in message["text"]
    assert "`&lt;https://evil.example|click&gt; &amp; more`" in texts[5]
    assert texts[6].endswith("throttle &lt;!channel&gt;")
    # the header is plain_text: Slack parses no markup there, so it carries the id as it is
    assert message["blocks"][0]["text"] == {"type": "plain_text", "text": ":warning: scraping: k:a&b<c>"}


def test_our_own_date_token_survives_escaping() -> None:
    penalty = {"action": "block", "expires_at": 1_900_000_000}
    fields = slack_message(alert(penalty=penalty))["blocks"][1]["fields"]
    assert fields[3]["text"] == "*Penalty*\nblock until <!date^1900000000^{time}|expiry>"


def test_webhooks_are_signed_per_standard_webhooks() -> None:
    body = webhook_body(alert())
    headers = webhook_headers(alert(), body, Webhook(SECRET))
    assert headers["webhook-id"] == webhook_id(alert()) and headers["webhook-id"].startswith("msg_")
    assert Webhook(SECRET).verify(body, headers) == alert()
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body + b" ", headers)
    other = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers)
    stale = webhook_headers(alert(), body, Webhook(SECRET), now=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10))
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body, stale)
    assert webhook_id(alert()) == webhook_id(alert()) != webhook_id(alert(version=3))  # one id per version
    assert "webhook-signature" not in webhook_headers(alert(), body, None)


def test_an_empty_webhook_secret_is_no_secret() -> None:
    assert StreamSettings(webhook_secret="").webhook_secret is None  # as compose passes an unset variable


@pytest.mark.parametrize("secret", ["plain-old-secret-of-enough-length",
                                    "whsec_" + base64.b64encode(b"short").decode(), "whsec_not base64!"])
def test_a_webhook_secret_not_in_whsec_form_is_refused_without_echoing_it(secret: str) -> None:
    with pytest.raises(ValidationError) as caught:
        StreamSettings(webhook_secret=secret)
    assert "RATEWARDEN_WEBHOOK_SECRET" in str(caught.value) and secret not in str(caught.value)
