"""How enforcers learn of run-time changes (overrides, API keys) within a second.

Writers bump ``rw:version`` and publish on ``rw:changes`` (``override <client>``
or ``apikey <hash>``). Each enforcer applies messages as they arrive and also
polls the version: if it moved while no message came (a dropped subscription),
it reloads everything.
"""

from __future__ import annotations

from typing import cast

CHANGES_CHANNEL = "rw:changes"
VERSION_KEY = "rw:version"
POLL_INTERVAL_S = 0.5


def as_bytes(reply: bytes | str | None) -> bytes | None:
    """A Redis reply as ratewarden's clients return it: they never decode (``decode_responses``
    is off), though redis-py types every reply ``bytes | str`` whatever the setting."""
    return cast("bytes | None", reply)
