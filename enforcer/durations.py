"""Parse durations such as ``30s``, ``1m``, ``1.5h``, ``1d`` or a number of seconds."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_WORDS = {"second": "s", "sec": "s", "minute": "m", "min": "m", "hour": "h", "day": "d"}


def parse_duration(value: object) -> float:
    """Seconds in ``value``; raises ValueError naming the accepted forms."""
    if isinstance(value, bool):
        raise ValueError("expected a duration, got a boolean")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        text = _WORDS.get(text.rstrip("s"), text) if text.rstrip("s") in _WORDS else text
        if text in _UNITS:
            text = "1" + text
        match = _PATTERN.match(text)
        if not match:
            raise ValueError(
                f"invalid duration {value!r}: use a number of seconds or a number with a unit "
                "ms, s, m, h or d (e.g. '30s', '1m', '1d')"
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    else:
        raise ValueError(f"expected a duration, got {type(value).__name__}")
    if seconds <= 0:
        raise ValueError("a duration must be greater than zero")
    return seconds
