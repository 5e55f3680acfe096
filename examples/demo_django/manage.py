#!/usr/bin/env python
"""The Django/DRF demo: ``python examples/demo_django/manage.py runserver``.

Without ``RATEWARDEN_REDIS_URL`` it starts a local Valkey server for itself.
"""

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    sys.path[:0] = [str(here), str(here.parent.parent)]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "drfdemo.settings")
    if "RATEWARDEN_REDIS_URL" not in os.environ and "runserver" in sys.argv:
        from ratewarden.local import RedisServer

        server = RedisServer().start()  # stopped when this process exits; the reloader child inherits the URL
        os.environ["RATEWARDEN_REDIS_URL"] = server.url
        print(f"demo: no RATEWARDEN_REDIS_URL, started a local server at {server.url}")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
