# Three images from one file; the Python ones installed from the lock (requirements/lock.txt):
#   docker build --target api .      the demo API behind the enforcer: no Faust, chDB, pandas or pyarrow
#   docker build --target worker .   the stream worker, the admin API and `ratewarden db migrate`
#   docker build --target grafana .  Grafana with the ClickHouse datasource plugin, pinned, installed here
#                                    so a (re)started container fetches nothing
# (the default target is the worker). ClickHouse is a server here, never the embedded engine.
FROM grafana/grafana:12.4.10 AS grafana
ARG CLICKHOUSE_PLUGIN_VERSION=4.20.0
# outside /var/lib/grafana, so that the volume holding Grafana's data never hides the plugin
ENV GF_PATHS_PLUGINS=/usr/share/grafana/pinned-plugins
USER root
RUN mkdir -p "$GF_PATHS_PLUGINS" && chown grafana "$GF_PATHS_PLUGINS"
USER grafana
RUN grafana cli --pluginsDir "$GF_PATHS_PLUGINS" plugins install grafana-clickhouse-datasource "$CLICKHOUSE_PLUGIN_VERSION"

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
# the volumes mounted on /app/var/* (the API's spill) start with these owners
RUN useradd --create-home --uid 10001 ratewarden && mkdir -p /app/var/spill /app/var/stream \
    && chown -R ratewarden /app/var
COPY requirements/lock.txt /app/lock.txt
COPY examples/policy.yaml /app/policy.yaml

FROM base AS wheel
COPY pyproject.toml README.md ./
COPY enforcer ./enforcer
COPY stream ./stream
COPY analytics ./analytics
COPY dashboards ./dashboards
COPY examples ./examples
COPY ratewarden ./ratewarden
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM base AS api
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip install -c /app/lock.txt "$(ls /wheels/ratewarden-*.whl)[fastapi,kafka]" "uvicorn[standard]"
USER ratewarden
EXPOSE 8000
CMD ["uvicorn", "ratewarden.examples.demo_fastapi.app:app", "--host", "0.0.0.0", "--port", "8000"]

FROM base AS worker
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip install -c /app/lock.txt "$(ls /wheels/ratewarden-*.whl)[stream,analytics,dashboards,cli]"
USER ratewarden
EXPOSE 8090 9108
CMD ["ratewarden", "worker"]
