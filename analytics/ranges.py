"""The time ranges the console offers, each with the bucket its charts use."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from .queries import as_utc

__all__ = ["RangeName", "BUCKET_S", "window_of", "buckets"]

RangeName = Literal["1h", "24h", "7d", "30d"]
# about 60-170 points a chart: per minute for an hour, 15 min for a day, an hour for a week, 6 h for 30 days
BUCKET_S: dict[str, int] = {"1h": 60, "24h": 900, "7d": 3600, "30d": 21_600}
_LENGTH = {"1h": dt.timedelta(hours=1), "24h": dt.timedelta(days=1), "7d": dt.timedelta(days=7),
           "30d": dt.timedelta(days=30)}


def window_of(name: RangeName, end: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
    """``[start, end)`` of the range ending at ``end`` (default now), both aligned to its bucket."""
    bucket = BUCKET_S[name]
    end = as_utc(end) if end is not None else dt.datetime.now(dt.UTC)
    stop = (int(end.timestamp()) // bucket + 1) * bucket  # the bucket holding `end` included
    return dt.datetime.fromtimestamp(stop, dt.UTC) - _LENGTH[name], dt.datetime.fromtimestamp(stop, dt.UTC)


def buckets(start: dt.datetime, end: dt.datetime, bucket_s: int) -> list[dt.datetime]:
    """Every bucket start in ``[start, end)``: the x axis, so empty buckets show as zero."""
    first = int(start.timestamp()) // bucket_s * bucket_s
    return [dt.datetime.fromtimestamp(t, dt.UTC) for t in range(first, int(end.timestamp()), bucket_s)]
