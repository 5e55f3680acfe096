"""Admin API tokens: the admin token itself, or expiring tokens derived from it, optionally issued
to a name (no web framework needed)."""

from __future__ import annotations

import hashlib
import hmac
import re
import time

__all__ = ["expiring_token", "token_valid", "token_principal", "ADMIN_PRINCIPAL", "EXPIRING_PRINCIPAL"]

_EXPIRING = "rwat"
_NAME = re.compile(r"^[A-Za-z0-9_@:+-]{1,64}$")  # no dot: it separates the token's parts
ADMIN_PRINCIPAL = "admin-token"  # who the admin token itself is
EXPIRING_PRINCIPAL = "expiring-token"  # who a token derived without a name is


def expiring_token(admin_token: str, expires_at: float, name: str | None = None) -> str:
    """A token valid until ``expires_at`` (unix time), derived from (and revoked with) the admin token:
    ``rwat.<expiry>[.<name>].<HMAC-SHA256 of what precedes it, keyed by the admin token>``. The name
    (letters, digits, _@:+-) is who the token was issued to: the audit log records it as verified."""
    if name is not None and not _NAME.fullmatch(name):
        raise ValueError(f"invalid token name {name!r}: 1-64 letters, digits or _@:+- (no dot)")
    payload = f"{_EXPIRING}.{int(expires_at)}" + (f".{name}" if name else "")
    signature = hmac.new(admin_token.encode(), payload.encode(), hashlib.sha256).hexdigest()
    return f"{payload}.{signature}"


def token_principal(given: str, admin_token: str, now: float | None = None) -> str | None:
    """Who ``given`` stands for if it is valid (compared in constant time): ``admin-token``, a derived
    token's name, or ``expiring-token`` for one without; None if it is invalid or expired."""
    given_bytes = given.encode("utf-8", "surrogateescape")
    if hmac.compare_digest(given_bytes, admin_token.encode()):
        return ADMIN_PRINCIPAL
    parts = given.split(".")
    if len(parts) not in (3, 4) or parts[0] != _EXPIRING or not (parts[1].isascii() and parts[1].isdigit()):
        return None
    name = parts[2] if len(parts) == 4 else None
    if name is not None and not _NAME.fullmatch(name):
        return None
    expected = expiring_token(admin_token, int(parts[1]), name)
    if not hmac.compare_digest(given_bytes, expected.encode()):
        return None
    if int(parts[1]) <= (time.time() if now is None else now):
        return None
    return name or EXPIRING_PRINCIPAL


def token_valid(given: str, admin_token: str, now: float | None = None) -> bool:
    """The admin token itself, or an unexpired token derived from it; compared in constant time."""
    return token_principal(given, admin_token, now) is not None
