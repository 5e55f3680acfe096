"""ratewarden's logs go through the standard ``logging`` tree, which the application configures
(``ratewarden.enforcer.logsetup.configure_logging`` does it for the processes ratewarden runs).

Each record's message is ``event key=value ...``; the event name (snake_case) and fields are also
on the record (``record.event``, ``record.fields``) for structured (JSON) handlers. Never pass
secrets: URLs go through :func:`redact`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

__all__ = ["EventLogger", "get_logger", "redact"]

# scheme://user:password@ -> scheme://user:***@ (the user alone is no secret, and names the account)
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@\s/]+@")


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    return _URL_PASSWORD.sub(r"\g<head>***@", text)


class EventLogger:
    """A stdlib logger that takes an event name and keyword fields, like structlog's API."""

    __slots__ = ("_logger",)

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)

    def _log(self, level: int, event: str, fields: dict[str, Any]) -> None:
        if self._logger.isEnabledFor(level):
            message = " ".join([event, *(f"{key}={value}" for key, value in fields.items())])
            # stacklevel 3: the record names the caller of info()/warning(), not this module
            self._logger.log(level, message, extra={"event": event, "fields": fields}, stacklevel=3)

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields)


def get_logger(name: str) -> EventLogger:
    """The event logger named ``name`` (e.g. ``ratewarden.enforcer``)."""
    return EventLogger(name)
