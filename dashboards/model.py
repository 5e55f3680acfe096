"""What every ratewarden dashboard shares, whatever its datasource: panels laid out left to right
on Grafana's 24-column grid, and the dashboard around them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, TypeVar

__all__ = ["dashboard", "placed"]

_COLUMNS = 24


class _Sized(Protocol):
    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...


P = TypeVar("P", bound=_Sized)


def placed(panels: Sequence[P]) -> Iterator[tuple[int, P, dict[str, int]]]:
    """Each panel with its id (from 1) and its Grafana ``gridPos``, in rows of 24 columns."""
    x, y, row_height = 0, 0, 0
    for number, panel in enumerate(panels, start=1):
        if x + panel.width > _COLUMNS:
            x, y, row_height = 0, y + row_height, 0
        yield number, panel, {"x": x, "y": y, "w": panel.width, "h": panel.height}
        x, row_height = x + panel.width, max(row_height, panel.height)


def dashboard(uid: str, title: str, panels: list[dict[str, Any]], refresh: str,
              variables: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The Grafana dashboard model of ``panels`` (UTC, the last hour, tagged ``ratewarden``)."""
    return {"uid": uid, "title": title, "tags": ["ratewarden"], "timezone": "utc", "schemaVersion": 39,
            "refresh": refresh, "time": {"from": "now-1h", "to": "now"}, "panels": panels,
            "templating": {"list": list(variables)}, "editable": True}
