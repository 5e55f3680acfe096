"""What each alert sink receives: a Slack Block Kit message, or the alert as JSON signed per
Standard Webhooks (https://www.standardwebhooks.com: ``webhook-id``, ``webhook-timestamp``,
``webhook-signature``), so receivers verify it with any Standard Webhooks library.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from standardwebhooks import Webhook

__all__ = ["slack_escape", "slack_message", "webhook_id", "webhook_body", "webhook_headers"]

_EMOJI = {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:"}
_SLACK_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def slack_escape(text: object) -> str:
    """``text`` with Slack's control characters escaped (``&``, ``<``, ``>``: the only three Slack
    decodes), so a client id or evidence value can neither link, mention nor break the markup."""
    return str(text).translate(_SLACK_ESCAPES)


def slack_message(alert: dict[str, Any]) -> dict[str, Any]:
    """A Block Kit message for ``alert`` (as published on the alerts topic)."""
    raw_title = f"{alert['alert_type'].replace('_', ' ')}: {alert['client_id']}"
    title = slack_escape(raw_title)
    evidence = "\n".join(f"• {slack_escape(k)}: `{slack_escape(v)}`" for k, v in alert["evidence"].items())
    penalty = alert.get("penalty")
    # the date token is Slack markup of our own making: not escaped
    action = (f"{slack_escape(penalty['action'])} until <!date^{int(penalty['expires_at'])}^{{time}}|expiry>"
              if penalty else "none")
    return {
        "text": f"[{slack_escape(alert['severity'])}] {title}",  # the notification's fallback text
        "blocks": [
            # plain_text is shown as given (no markup is parsed there), so it is not escaped
            {"type": "header",
             "text": {"type": "plain_text", "text": f"{_EMOJI.get(alert['severity'], '')} {raw_title}"[:150]}},
            {"type": "section", "fields": [
                {"type": "mrkdwn", "text": f"*Severity*\n{slack_escape(alert['severity'])}"},
                {"type": "mrkdwn", "text": f"*Tier*\n{slack_escape(alert.get('tier') or '-')}"},
                {"type": "mrkdwn", "text": f"*Occurrences*\n{alert['occurrences']}"},
                {"type": "mrkdwn", "text": f"*Penalty*\n{action}"},
            ]},
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Evidence*\n{evidence}"[:3000]}},
            {"type": "section", "text": {"type": "mrkdwn",
                                         "text": f"*Suggested action*\n{slack_escape(alert['suggested_action'])}"}},
            {"type": "context", "elements": [
                {"type": "mrkdwn",
                 "text": f"ratewarden · {slack_escape(alert['dedup_key'])} · v{alert['version']}"},
            ]},
        ],
    }


def webhook_id(alert: dict[str, Any]) -> str:
    """The ``webhook-id`` of one alert version: the same on every attempt, so receivers drop repeats
    (a digest: client ids may hold characters a header cannot)."""
    digest = hashlib.sha256(f"{alert['dedup_key']}:{alert['version']}".encode()).hexdigest()[:32]
    return f"msg_{digest}"


def webhook_body(alert: dict[str, Any]) -> bytes:
    """The alert as a webhook's JSON body."""
    return json.dumps(alert, separators=(",", ":")).encode()


def webhook_headers(alert: dict[str, Any], body: bytes, signer: Webhook | None,
                    now: dt.datetime | None = None) -> dict[str, str]:
    """Standard Webhooks headers for ``body`` (``webhook-signature`` only with a secret), signed at
    ``now`` (each attempt signs afresh: receivers refuse timestamps more than 5 minutes off)."""
    now = dt.datetime.now(dt.UTC) if now is None else now
    msg_id = webhook_id(alert)
    headers = {"content-type": "application/json", "webhook-id": msg_id,
               "webhook-timestamp": str(int(now.timestamp()))}
    if signer is not None:
        headers["webhook-signature"] = signer.sign(msg_id, now, body.decode())
    return headers
