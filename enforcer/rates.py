"""Rate strings in the grammar ``limits``, slowapi and Flask-Limiter share: ``"10/minute"``,
``"10 per minute"``, ``"100/2 hours"``, several joined by ``;`` or ``,`` (``"10/minute;100/hour"``),
and compact periods such as ``"5/15m"`` or ``"10/s"``.

Periods are exact: ``second``, ``minute``, ``hour``, ``day`` (and ``week``), with or without a
count and a plural ``s``; ``ms``, ``s``, ``m``, ``h``, ``d`` and their common spellings
(``sec``, ``min``, ``hr``). ``month`` and ``year`` are refused rather than guessed at (30 days?
the calendar?): calendar quotas are ``quotas.monthly`` in the policy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Rate", "parse_rate", "parse_rates"]

_UNITS = {
    "ms": 0.001, "millisecond": 0.001,
    "s": 1.0, "sec": 1.0, "second": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0,
    "h": 3600.0, "hr": 3600.0, "hour": 3600.0,
    "d": 86400.0, "day": 86400.0,
    "w": 604800.0, "week": 604800.0,
}
_CALENDAR = {"mo", "mon", "month", "y", "yr", "year"}
_RATE = re.compile(r"^\s*(\d+)\s*(?:/|\bper\b)\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$", re.IGNORECASE)
_SEPARATORS = re.compile(r"[;,]")
_FORMS = "'N/period' or 'N per period' such as '10/minute', '10 per minute', '100/2 hours' or '5/15m'"


@dataclass(frozen=True, slots=True)
class Rate:
    """``limit`` units per ``period_s`` seconds; ``name`` is derived from both (``10-per-1m``)."""

    limit: int
    period_s: float

    @property
    def name(self) -> str:
        """A rule name for this rate when none is given: ``10-per-1m``, ``5-per-15m``, ``100-per-1d``."""
        return f"{self.limit}-per-{_compact(self.period_s)}"


def _unit(word: str) -> float | None:
    word = word.lower()
    if word in _UNITS:
        return _UNITS[word]
    if word.endswith("s") and word[:-1] in _UNITS:
        return _UNITS[word[:-1]]
    return None


def _compact(seconds: float) -> str:
    for suffix, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        count = seconds / size
        if count >= 1 and count == int(count):
            return f"{int(count)}{suffix}"
    return f"{round(seconds * 1000)}ms"


def parse_rate(text: str) -> Rate:
    """One rate; raises ValueError naming the accepted forms."""
    if not isinstance(text, str):
        raise ValueError(f"expected a rate string such as '10/minute', got {type(text).__name__}")
    match = _RATE.match(text)
    if match is None:
        raise ValueError(f"invalid rate {text!r}: expected {_FORMS}")
    limit, count, word = int(match.group(1)), match.group(2), match.group(3)
    size = _unit(word)
    if size is None:
        if word.lower().rstrip("s") in _CALENDAR:
            raise ValueError(f"invalid rate {text!r}: {word!r} has no fixed length; use a period of days "
                             "(e.g. '1000/30d') or the policy's calendar quotas (quotas.monthly)")
        raise ValueError(f"invalid rate {text!r}: unknown period {word!r}; use ms, second, minute, hour, day or "
                         "week (or s, m, h, d), optionally with a count as in '5/15m'")
    period = (float(count) if count else 1.0) * size
    if limit <= 0 or period <= 0:
        raise ValueError(f"invalid rate {text!r}: the count and the period must be greater than zero")
    if period < 0.001:
        raise ValueError(f"invalid rate {text!r}: the period must be at least 1ms")
    return Rate(limit, period)


def parse_rates(text: str) -> list[Rate]:
    """One or more rates joined by ``;`` or ``,`` (``"10/minute;100/hour"``); raises ValueError."""
    if not isinstance(text, str):
        raise ValueError(f"expected a rate string such as '10/minute', got {type(text).__name__}")
    parts = [part for part in _SEPARATORS.split(text) if part.strip()]
    if not parts:
        raise ValueError(f"invalid rate {text!r}: expected {_FORMS}")
    rates = [parse_rate(part) for part in parts]
    names = [rate.name for rate in rates]
    if len(set(names)) != len(names):
        raise ValueError(f"invalid rates {text!r}: the same rate is written twice")
    return rates
