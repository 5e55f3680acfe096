"""ratewarden: command line and local development servers.

The library parts live in the top-level packages ``enforcer`` (inside an API),
``stream`` (Faust workers), ``analytics`` (ClickHouse, admin API) and
``dashboards`` (Grafana). This package holds what spans them: the
``ratewarden`` console script and the manager of local servers used by tests,
benchmarks and ``ratewarden up``.
"""

__version__ = "0.1.0"
