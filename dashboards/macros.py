"""Expand a panel's SQL the way Grafana and the ClickHouse datasource plugin do, so panel
queries can be run outside Grafana (the tests run every one against seeded ClickHouse).

Template variables (``${name}`` and ``$name``) are replaced first, as Grafana does, then the
plugin's macros, following its ``pkg/macros`` code: ``$__timeFilter(c)`` is
``c >= '<from unix s>' AND c <= '<to unix s>'``, ``$__fromTime``/``$__toTime`` are
``toDateTime(intDiv(<unix ms>,1000))``, ``$__timeInterval(c)`` is
``toStartOfInterval(toDateTime(c), INTERVAL <s> second)``, ``$__interval_s`` is the
interval in seconds (at least 1), ``$__dateFilter(c)`` compares to dates.
"""

from __future__ import annotations

import datetime as dt
import re

__all__ = ["expand"]

_FUNCTION = re.compile(r"\$__(timeFilter|dateFilter|timeInterval)\(([^()]*)\)")


def expand(sql: str, start: dt.datetime, end: dt.datetime, interval_s: float,
           variables: dict[str, str] | None = None) -> str:
    """``sql`` with variables and macros replaced for the range ``[start, end]``."""
    for name, value in sorted((variables or {}).items(), key=lambda kv: -len(kv[0])):
        sql = sql.replace(f"${{{name}}}", value).replace(f"${name}", value)
    seconds = max(int(interval_s), 1)
    from_s, to_s = int(start.timestamp()), int(end.timestamp())

    def function(match: re.Match[str]) -> str:
        name, column = match.group(1), match.group(2).strip().strip("'\"")
        if name == "timeFilter":
            return f"{column} >= '{from_s}' AND {column} <= '{to_s}'"
        if name == "dateFilter":
            day = lambda moment: moment.astimezone(dt.UTC).strftime("%Y-%m-%d")  # noqa: E731
            return f"{column} >= '{day(start)}' AND {column} <= '{day(end)}'"
        return f"toStartOfInterval(toDateTime({column}), INTERVAL {seconds} second)"

    sql = _FUNCTION.sub(function, sql)
    sql = sql.replace("$__fromTime", f"toDateTime(intDiv({int(start.timestamp() * 1000)},1000))")
    sql = sql.replace("$__toTime", f"toDateTime(intDiv({int(end.timestamp() * 1000)},1000))")
    sql = sql.replace("$__interval_s", str(seconds))
    if "$__" in sql or re.search(r"\$\{?[A-Za-z_]", sql):
        raise ValueError(f"unexpanded macro or variable in: {sql}")
    return sql
