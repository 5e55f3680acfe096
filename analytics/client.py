"""ClickHouse clients: a server over HTTP (``http://host:8123``) or embedded chDB (``chdb:///abs/dir``)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from ratewarden.extras import require

__all__ = ["connect", "default_url", "Serialized"]

DEFAULT_CHDB_DIR = Path("var/clickhouse")


def default_url() -> str:
    """``RATEWARDEN_CLICKHOUSE_URL`` if set, else embedded chDB under ``var/clickhouse``.

    chDB allows one engine and one data directory per process: a second process on the
    same directory fails with "Cannot lock file".
    """
    return os.environ.get("RATEWARDEN_CLICKHOUSE_URL") or f"chdb://{DEFAULT_CHDB_DIR.resolve()}"


def connect(url: str | None = None) -> Client:
    """A clickhouse-connect client for ``url`` (same API for HTTP servers and chDB)."""
    url = url or default_url()
    if url.startswith("chdb://"):
        require("local", "chdb", feature=f"embedded ClickHouse ({url})")
        Path(url.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
    return clickhouse_connect.get_client(dsn=url)


class Serialized:
    """A client whose calls run one at a time, for sharing one (chDB) client between threads,
    e.g. the stream worker's writes and the admin API it serves in embedded mode."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._lock = threading.RLock()

    def query(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._client.query(*args, **kwargs)

    def insert(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._client.insert(*args, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._client.command(*args, **kwargs)
