"""Prometheus metrics of a stream worker (served on ``RATEWARDEN_WORKER_METRICS_ADDRESS``)."""

from __future__ import annotations

from http.server import HTTPServer

from prometheus_client import Counter, Gauge, Histogram, start_http_server

_SETTING = "RATEWARDEN_WORKER_METRICS_ADDRESS"

EVENTS = Counter("ratewarden_stream_events", "Request records read from Kafka")
DUPLICATES = Counter("ratewarden_stream_duplicates", "Events skipped as already written or seen")
DEAD_LETTERS = Counter("ratewarden_stream_dead_letters", "Records sent to the dead-letter topic")
WINDOWS = Counter("ratewarden_stream_windows", "Closed window summaries sent to the detectors")
ROWS = Counter("ratewarden_stream_usage_rows", "Usage rows written to ClickHouse")
LAG = Gauge("ratewarden_stream_lag", "Request records not yet read, per owned partition", ["partition"])
ALERTS = Counter("ratewarden_stream_alerts", "Alerts raised or escalated", ["alert_type"])
PENALTIES = Counter("ratewarden_stream_penalties", "Penalties written to Redis", ["action"])
DELIVERY = Counter("ratewarden_stream_deliveries", "Alert deliveries by outcome: delivered, retried (an attempt "
                   "to be repeated), refused (a 4xx for good), expired (not accepted by the deadline)", ["outcome"])
STATE_ENTRIES = Gauge("ratewarden_stream_state_entries", "Entries in a table of the detectors' state (this worker's "
                      "copy), after the latest sweep", ["table"])
DELAY = Histogram(
    "ratewarden_stream_delay_seconds", "From an event's production to its usage being written (1% sample)",
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0, 20.0, 60.0, 300.0))


def serve(address: str) -> HTTPServer:
    """Serve this process's metrics (``/metrics``, from a daemon thread) on ``address`` (``host:port``,
    as StreamSettings validated it). Returns the server (``shutdown()`` stops it)."""
    from .settings import listen_address

    host, port = listen_address(address, _SETTING)
    try:
        server, _thread = start_http_server(port, addr=host)
    except OSError as exc:  # the port taken, or an address not on this host
        raise OSError(exc.errno, f"{_SETTING}={address}: cannot listen there: {exc.strerror}") from exc
    return server
