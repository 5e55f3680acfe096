# The Python services of ratewarden: the demo API (enforcer), the stream worker, the admin API.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY enforcer ./enforcer
COPY stream ./stream
COPY analytics ./analytics
COPY dashboards ./dashboards
COPY ratewarden ./ratewarden
COPY examples ./examples
RUN pip install ".[fastapi,stream,analytics]" \
    && useradd --create-home --uid 10001 ratewarden \
    && mkdir -p /app/var && chown ratewarden /app/var
USER ratewarden
EXPOSE 8000 8090 9108
CMD ["ratewarden", "--help"]
