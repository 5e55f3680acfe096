"""Validation failures as the admin API returns them: a 422 whose ``detail`` lists each bad field
by its path (``loc``) and message (``msg``), the shape FastAPI gives its own validation errors, so
a console can put each message next to its field."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import HTTPException
from pydantic import BaseModel

__all__ = ["FieldError", "FieldErrors", "invalid", "UNPROCESSABLE"]


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str = "value_error"


class FieldErrors(BaseModel):
    """The body of every 422: one entry per bad field."""

    detail: list[FieldError]


UNPROCESSABLE: dict[int | str, dict[str, Any]] = {
    422: {"model": FieldErrors, "description": "bad input: each field's path (loc) and its message (msg)"}}


def invalid(loc: Sequence[str | int], message: str) -> HTTPException:
    """A 422 naming one field."""
    return HTTPException(422, [{"loc": list(loc), "msg": message, "type": "value_error"}])
