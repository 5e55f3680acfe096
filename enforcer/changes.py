"""How enforcers learn of run-time changes (overrides, API keys) within a second.

Writers bump ``rw:{ctl}:version`` and publish on ``rw:changes`` (``override <client>``
or ``apikey <hash>``). Each enforcer applies messages as they arrive and also
polls the version: if it moved while no message came (a dropped subscription),
it reloads everything.

Every key of this run-time state carries the hash tag ``{ctl}``: on a Redis Cluster they share
one slot, so a change is one transaction (the version and the entry move together).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import redis
from redis.cluster import RedisCluster

CHANGES_CHANNEL = "rw:changes"
VERSION_KEY = "rw:{ctl}:version"
POLL_INTERVAL_S = 0.5


def commit_change(client: redis.Redis | RedisCluster, message: str, write: Callable[[Any], object]) -> list[Any]:
    """Apply ``write(pipeline)`` and bump the version in one transaction, then announce ``message``.

    The announcement follows the transaction (a cluster does not publish from one); if it is
    lost, enforcers still see the version move within a poll. Returns the transaction's replies."""
    pipe = client.pipeline(transaction=True)
    write(pipe)
    pipe.incr(VERSION_KEY)
    replies = pipe.execute()
    client.publish(CHANGES_CHANNEL, message)
    return replies


def as_bytes(reply: bytes | str | None) -> bytes | None:
    """A Redis reply as ratewarden's clients return it: they never decode (``decode_responses``
    is off), though redis-py types every reply ``bytes | str`` whatever the setting."""
    return cast("bytes | None", reply)
