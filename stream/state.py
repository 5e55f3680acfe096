"""The detectors' state with a lifetime: entries untouched for a while are swept away.

Faust tables only change inside an agent, and a change goes to the changelog partition of the
event being handled, so an entry can be deleted only while handling an event of the partition
it was written from. Each entry therefore carries that partition and when it was last written;
the worker sends a tick to every partition of the windows topic now and then
(:data:`TICK_KEY`), and the agent sweeps that partition's stale entries when the tick comes.
A partition without traffic is swept too, so every table is bounded by time, not by how many
clients were ever seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, TypeVar

__all__ = ["ExpiringState", "StoredMapping", "TICK_KEY"]

TICK_KEY = b"\x00ratewarden-tick"  # no summary key starts with NUL

V = TypeVar("V")


class StoredMapping(MutableMapping[str, V]):
    """A mapping whose entries live in ``store`` (a dict, or a Faust table) in another form:
    subclasses convert them in ``__getitem__`` and ``__setitem__``."""

    def __init__(self, store: MutableMapping[str, Any]) -> None:
        self.store = store

    def __delitem__(self, key: str) -> None:
        del self.store[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.store)

    def __len__(self) -> int:
        return len(self.store)


class ExpiringState(StoredMapping[Any]):
    """Values stored in ``store`` as ``[partition, written_at, value]``; :meth:`sweep` drops those of
    one partition written more than ``ttl_s`` before a given time.

    ``partition`` names the partition being handled (the current Faust event's; 0 for a plain
    dict), ``clock`` the time entries are stamped with (wall time: sweeps compare it with theirs).
    """

    def __init__(self, store: MutableMapping[str, Any], ttl_s: float,
                 partition: Callable[[], int] = lambda: 0, clock: Callable[[], float] = time.time) -> None:
        super().__init__(store)
        self.ttl_s = ttl_s
        self.partition = partition
        self.clock = clock

    def __getitem__(self, key: str) -> Any:
        return self.store[key][2]

    def __setitem__(self, key: str, value: Any) -> None:
        self.store[key] = [self.partition(), self.clock(), value]

    def sweep(self, partition: int, now: float) -> dict[str, Any]:
        """Remove the entries of ``partition`` last written ``ttl_s`` or more before ``now``; returns them."""
        stale = {key: entry[2] for key, entry in list(self.store.items())
                 if entry[0] == partition and entry[1] <= now - self.ttl_s}
        for key in stale:
            del self.store[key]
        return stale
