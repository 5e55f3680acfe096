"""The admin API and console served from a worker process (``RATEWARDEN_WORKER_ADMIN_PORT``).

With embedded chDB only one process may open the data directory, so the worker that writes
ClickHouse also answers the admin API, on its own event loop and with the same client.
"""

from __future__ import annotations

import faust
from faust.contrib.asgi import serve_asgi

from ratewarden.analytics.admin import AdminSettings, create_admin_app
from ratewarden.analytics.client import Serialized, connect
from ratewarden.analytics.migrations import migrate

from .settings import StreamSettings

__all__ = ["host_admin"]


def host_admin(app: faust.App, settings: StreamSettings) -> Serialized:
    """Serve the admin API beside ``app`` on ``settings.worker_admin_port``; returns the ClickHouse
    client the worker must share with it (migrated now: the API may be asked before the worker
    has started)."""
    admin = AdminSettings()
    clickhouse = Serialized(connect(settings.clickhouse_url))
    migrate(clickhouse, settings.clickhouse_database)
    serve_asgi(app, create_admin_app(admin, clickhouse), host=admin.admin_host, port=settings.worker_admin_port,
               log_level="warning")
    return clickhouse
