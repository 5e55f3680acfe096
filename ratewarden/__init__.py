"""ratewarden: distributed, tier-aware rate limiting with usage analytics and abuse detection.

One import package, in parts that each need only their own extra:

- ``ratewarden.enforcer``: what runs inside an API (base install; ``[fastapi]``,
  ``[django]``, ``[kafka]`` for its integrations and event publishing);
- ``ratewarden.stream``: the Faust stream worker (``[stream]``);
- ``ratewarden.analytics``: the ClickHouse schema, queries and admin API (``[analytics]``);
- ``ratewarden.dashboards``: Grafana dashboards (``[dashboards]``);
- ``ratewarden.cli``, ``ratewarden.local``, ``ratewarden.stack``: the ``ratewarden``
  command and the embedded local servers (``[cli]``, ``[local]``).

Importing this package imports none of those parts.
"""

__version__ = "0.1.0"
