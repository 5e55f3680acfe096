"""Logging set-up for the processes ratewarden runs (worker, admin API, demo APIs): one handler on
the root logger, text or JSON lines (``RATEWARDEN_LOG_FORMAT``), at ``RATEWARDEN_LOG_LEVEL``.

Inside your own API, configure ``logging`` as you like instead: ratewarden's records are ordinary
records of the ``ratewarden.*`` loggers, with ``record.event`` and ``record.fields`` for JSON.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import IO, Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["JsonFormatter", "LogSettings", "TextFormatter", "configure_logging"]

_OWN_HANDLERS = ("uvicorn", "uvicorn.error", "uvicorn.access")  # loggers uvicorn gives handlers of their own
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class LogSettings(BaseSettings):
    """``RATEWARDEN_LOG_FORMAT`` and ``RATEWARDEN_LOG_LEVEL``."""

    model_config = SettingsConfigDict(env_prefix="RATEWARDEN_", extra="ignore")

    log_format: Literal["text", "json"] = Field("text", description="text lines, or one JSON object per line")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="the root logger's level")


def _timestamp(record: logging.LogRecord) -> str:
    return dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """``2026-01-01T00:00:00.000Z WARNING ratewarden.enforcer redis_unavailable server=...``."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time``, ``level``, ``logger``, ``event`` and the event's fields.

    Records of other libraries (uvicorn, Faust, aiokafka) carry their message as ``event``, and
    anything they passed in ``extra`` as fields."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, "fields", None) or {
            key: value for key, value in vars(record).items() if key not in _STANDARD}
        line: dict[str, Any] = {"time": _timestamp(record), "level": record.levelname.lower(), "logger": record.name,
                                "event": getattr(record, "event", None) or record.getMessage()}
        line.update((key, value) for key, value in fields.items() if key not in line)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(settings: LogSettings | None = None, stream: IO[str] | None = None) -> LogSettings:
    """Send every record (ratewarden's and its libraries') to ``stream`` (stderr) in the format and
    at the level of ``settings`` (default: from the environment). Replaces the root logger's handlers,
    and uvicorn's (which print on their own unless told not to)."""
    settings = settings or LogSettings()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for name in _OWN_HANDLERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    return settings
