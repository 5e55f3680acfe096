"""Admin API tokens: the admin token itself, or expiring tokens derived from it (no web framework needed)."""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = ["expiring_token", "token_valid"]

_EXPIRING = "rwat"


def expiring_token(admin_token: str, expires_at: float) -> str:
    """A token valid until ``expires_at`` (unix time), derived from (and revoked with) the admin token:
    ``rwat.<expiry>.<HMAC-SHA256 of the expiry keyed by the admin token>``."""
    expiry = str(int(expires_at))
    signature = hmac.new(admin_token.encode(), f"{_EXPIRING}.{expiry}".encode(), hashlib.sha256).hexdigest()
    return f"{_EXPIRING}.{expiry}.{signature}"


def token_valid(given: str, admin_token: str, now: float | None = None) -> bool:
    """The admin token itself, or an unexpired token derived from it; compared in constant time."""
    given_bytes = given.encode("utf-8", "surrogateescape")
    if hmac.compare_digest(given_bytes, admin_token.encode()):
        return True
    parts = given.split(".")
    if len(parts) != 3 or parts[0] != _EXPIRING or not parts[1].isdigit():
        return False
    expected = expiring_token(admin_token, int(parts[1]))
    valid = hmac.compare_digest(given_bytes, expected.encode())
    return valid and int(parts[1]) > (time.time() if now is None else now)
