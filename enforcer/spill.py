"""Append-only, size-capped, rotated files where events wait while Kafka is unreachable."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["Spill"]


class Spill:
    """Event lines in numbered segment files, replayed oldest first.

    Thread-safe. Past ``max_bytes`` in all segments, further lines are dropped and
    counted in ``dropped``. Segments left by an earlier process are replayed too.
    """

    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.dropped = 0
        self.written = 0
        self._lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)
        self._closed = sorted(directory.glob("spill-*.jsonl"))
        self._bytes = sum(p.stat().st_size for p in self._closed)
        self._next = 1 + max((int(p.stem.split("-")[1]) for p in self._closed), default=0)
        self._current: Path | None = None
        self._file: BinaryIO | None = None
        self._current_bytes = 0

    @property
    def pending(self) -> bool:
        """True if any line waits to be replayed."""
        return bool(self._closed) or self._current_bytes > 0

    def write(self, lines: Iterable[bytes]) -> int:
        """Append lines (each one JSON document); returns how many were kept."""
        kept = 0
        with self._lock:
            for line in lines:
                size = len(line) + 1
                if self._bytes + size > self.max_bytes:
                    self.dropped += 1
                    continue
                if self._file is None or self._current_bytes + size > self.segment_bytes:
                    self._rotate()
                assert self._file is not None
                self._file.write(line + b"\n")
                self._current_bytes += size
                self._bytes += size
                kept += 1
            self.written += kept
        return kept

    def _close_current(self) -> None:
        """Close the segment being written and queue it for replay (call with the lock held)."""
        if self._file is not None:
            self._file.close()
            assert self._current is not None
            self._closed.append(self._current)
            self._file, self._current, self._current_bytes = None, None, 0

    def _rotate(self) -> None:
        self._close_current()
        self._current = self.directory / f"spill-{self._next:08d}.jsonl"
        self._next += 1
        self._file = open(self._current, "ab")

    def take_segment(self) -> Path | None:
        """The oldest segment to replay (the one being written is closed first if it is all there is)."""
        with self._lock:
            if not self._closed and self._current_bytes:
                self._close_current()
            return self._closed[0] if self._closed else None

    @staticmethod
    def read(segment: Path) -> Iterator[bytes]:
        with open(segment, "rb") as handle:
            for line in handle:
                line = line.rstrip(b"\n")
                if line:
                    yield line

    def done(self, segment: Path) -> None:
        """Forget a segment whose events were all delivered."""
        with self._lock:
            if segment in self._closed:
                self._closed.remove(segment)
                self._bytes -= segment.stat().st_size
                os.unlink(segment)

    def flush(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._close_current()
