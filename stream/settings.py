"""Typed settings for the stream worker, read from ``RATEWARDEN_*`` environment variables.

Nested values use ``__``: ``RATEWARDEN_DETECTORS__SCRAPING__MIN_DISTINCT_PATHS=60``,
``RATEWARDEN_PENALTIES__SCRAPING__ACTION=block``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ratewarden.enforcer.policy import Algorithm, Rule, Scope
from ratewarden.enforcer.settings import split_list

from .detectors import (
    CredentialStuffingDetector,
    Detector,
    EndpointStuffingDetector,
    KeyCyclingDetector,
    KeySharingDetector,
    RetryStormDetector,
    ScrapingDetector,
    SpikeDetector,
)

__all__ = ["StreamSettings", "DetectorSettings", "PenaltyAction", "listen_address"]


def listen_address(value: str, setting: str) -> tuple[str, int]:
    """(host, port) of ``host:port``, ``[ipv6]:port``, ``:port`` or ``port`` (host 127.0.0.1); a
    ValueError naming ``setting`` otherwise."""
    text = value.strip()
    if text.startswith("["):  # [ipv6]:port
        host, separator, port = text[1:].partition("]:")
        valid = bool(separator)
    else:
        host, _, port = text.rpartition(":")
        valid = ":" not in host  # an IPv6 address needs brackets
    valid = valid and port.isdigit() and 1 <= int(port) <= 65535 and all(c.isalnum() or c in ".-_:" for c in host)
    if not valid:
        raise ValueError(f"{setting}={value!r}: expected host:port with a port from 1 to 65535, "
                         "such as 0.0.0.0:9108 (every interface) or 127.0.0.1:9108")
    return host or "127.0.0.1", int(port)


class DetectorSettings(BaseModel):
    """Every detector the worker runs, one field each, named by its alert type: the registry
    (:func:`~ratewarden.stream.detectors.registered`). Count thresholds are per minute; shorter
    windows scale them."""

    model_config = ConfigDict(extra="forbid")

    retry_storm: RetryStormDetector = Field(default_factory=RetryStormDetector)
    credential_stuffing: CredentialStuffingDetector = Field(default_factory=CredentialStuffingDetector)
    credential_stuffing_distributed: EndpointStuffingDetector = Field(default_factory=EndpointStuffingDetector)
    scraping: ScrapingDetector = Field(default_factory=ScrapingDetector)
    key_sharing: KeySharingDetector = Field(default_factory=KeySharingDetector)
    key_cycling: KeyCyclingDetector = Field(default_factory=KeyCyclingDetector)
    traffic_spike: SpikeDetector = Field(default_factory=SpikeDetector)

    @model_validator(mode="after")
    def _named_by_alert_type(self) -> DetectorSettings:
        for name in type(self).model_fields:
            detector = getattr(self, name)
            if isinstance(detector, Detector) and detector.alert_type != name:
                raise ValueError(f"detectors.{name}: a detector's field is named by its alert type "
                                 f"({detector.alert_type!r})")
        return self


class PenaltyAction(BaseModel):
    """What happens to a client a detector flags: ``alert`` only, ``throttle`` (its rules are
    replaced by ``StreamSettings.penalty_rule``) or ``block``, for ``duration_s``."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["alert", "throttle", "block"] = "alert"
    duration_s: float = Field(900.0, gt=0)


def _default_penalties() -> dict[str, PenaltyAction]:
    return {
        "retry_storm": PenaltyAction(action="throttle", duration_s=600),
        "credential_stuffing": PenaltyAction(action="block", duration_s=900),
        "scraping": PenaltyAction(action="throttle", duration_s=900),
        "key_sharing": PenaltyAction(action="alert"),
        "key_cycling": PenaltyAction(action="alert"),
        "traffic_spike": PenaltyAction(action="alert"),
        "credential_stuffing_distributed": PenaltyAction(action="alert"),
    }


class StreamSettings(BaseSettings):
    """Everything the stream worker reads from its environment. See the README's settings table."""

    # hide_input_in_errors: a bad value may be a secret (a webhook URL, the signing secret)
    model_config = SettingsConfigDict(env_prefix="RATEWARDEN_", env_nested_delimiter="__", extra="ignore",
                                      hide_input_in_errors=True)

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers")
    kafka_topic: str = Field("ratewarden.requests", description="request events (the enforcer's topic)")
    kafka_topic_epoch: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="names this life of the request topic: give it a new value whenever the topic is made anew "
                    "and empty (its offsets start again at 0), or the usage already in ClickHouse, kept by topic, "
                    "partition and offset, makes the worker skip the new topic's first events as written. "
                    "`ratewarden up` sets it each time it starts its in-memory broker")
    windows_topic: str = Field("ratewarden.windows", description="closed window summaries, for the detectors")
    alerts_topic: str = Field("ratewarden.alerts", description="alerts, for delivery and other consumers")
    dead_letter_topic: str = Field("ratewarden.requests.dlq", description="events that could not be decoded")
    undeliverable_topic: str = Field("ratewarden.alerts.undeliverable",
                                     description="alerts a sink refused, or had not accepted by the delivery deadline")
    consumer_group: str = Field("ratewarden-stream", pattern=r"^[A-Za-z0-9._-]{1,100}$",
                                description="the workers' Faust app id and Kafka consumer group prefix")
    topic_partitions: int = Field(8, ge=1, description="partitions of the topics the worker creates")
    topic_replication_factor: int = Field(1, ge=1, description="replicas of each topic the worker creates, its "
                                          "tables' changelogs included (at most the brokers there are)")
    clickhouse_url: str | None = Field(None, description="http://host:8123 or chdb:///dir (default: chDB under var/)")
    clickhouse_database: str = Field("ratewarden", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="the enforcers' Redis, where penalties go")
    window_s: float = Field(60.0, gt=0, description="tumbling usage window")
    short_window_s: float = Field(20.0, gt=0, description="hopping window for fast detection")
    short_hop_s: float = Field(10.0, gt=0, description="hop of the short window")
    allowed_lateness_s: float = Field(5.0, ge=0, description="a window closes this long after its end (event time)")
    idle_close_s: float = Field(5.0, gt=0, description="a partition quiet this long closes its open windows")
    flush_interval_s: float = Field(1.0, gt=0, description="aggregates are written to ClickHouse this often")
    dedup_window_s: float = Field(180.0, ge=0, description="event ids are remembered this long for deduplication")
    kafka_timeout_s: float = Field(10.0, gt=0, description="longest wait for an offset commit or window summaries "
                                   "to be acknowledged before the worker moves on (they are retried next flush)")
    progress_log_s: float = Field(30.0, gt=0, description="the worker logs its partitions, lag and totals this often")
    max_poll_records: int = Field(20_000, ge=1, description="events taken from Kafka per fetch")
    auth_routes: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["POST /v1/login"], description="routes tagged as authentication (comma separated)")
    detectors: DetectorSettings = Field(default_factory=DetectorSettings)
    alert_cooldown_s: float = Field(900.0, gt=0, description="an alert quiet this long closes; the next one is new")
    state_ttl_s: float = Field(21_600.0, gt=0, description="the detectors' state of a client (spike baselines, "
                               "windows examined) is dropped once untouched this long")
    state_sweep_interval_s: float = Field(60.0, gt=0, description="the worker sweeps stale state and closes quiet "
                                          "alerts this often")
    override_purge_interval_s: float = Field(60.0, gt=0, description="the worker removes lapsed overrides "
                                             "(penalties) from Redis this often")
    penalties: dict[str, PenaltyAction] = Field(default_factory=_default_penalties)
    penalty_rule: Rule = Field(
        default_factory=lambda: Rule(name="penalty", algorithm=Algorithm.fixed_window, limit=10, period=60,
                                     scope=[Scope.client]),
        description="the rules a throttled client gets")
    penalty_exempt_tiers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["trusted"], description="tiers never penalised (comma separated)")
    slack_webhook_url: SecretStr | None = Field(None, description="Slack incoming webhook for alerts")
    webhook_urls: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="generic alert webhooks (comma separated)")
    webhook_secret: SecretStr | None = Field(
        None, description="Standard Webhooks signing secret, whsec_<base64 of 24 to 64 random bytes>")
    delivery_timeout_s: float = Field(5.0, gt=0, description="per attempt")
    delivery_max_backoff_s: float = Field(60.0, gt=0, description="retry delay cap for a failing sink")
    delivery_deadline_s: float = Field(300.0, gt=0, description="a sink that has not accepted an alert this long "
                                       "after its first attempt is given up on (the alert goes to the "
                                       "undeliverable topic)")
    delivery_concurrency: int = Field(100, ge=1, description="alerts being delivered at once (a dead sink holds "
                                      "each of its alerts for up to the deadline, never the others)")
    rebalance_timeout_s: float = Field(10.0, gt=0, description="group session and rebalance timeout")
    worker_metrics_address: str | None = Field(
        None, description="host:port the worker serves Prometheus metrics on (/metrics); a bare port listens on "
                          "127.0.0.1 (unset: off)")
    worker_admin_port: int = Field(0, ge=0, le=65535, description="serve the admin API and console from the worker "
                                   "on this port (0: off); the way to have them with embedded chDB")
    worker_web_port: int = Field(0, ge=0, le=65535, description="Faust's web port (0: off)")
    data_dir: str = Field("var/stream", description="Faust's local state directory")

    @model_validator(mode="after")
    def _short_window_fits_its_hops(self) -> StreamSettings:
        if self.short_window_s % self.short_hop_s:  # checked here, not when the first partition comes
            raise ValueError(f"RATEWARDEN_SHORT_WINDOW_S ({self.short_window_s:g}) must be a multiple of "
                             f"RATEWARDEN_SHORT_HOP_S ({self.short_hop_s:g})")
        return self

    @field_validator("worker_metrics_address")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, port = listen_address(value, "RATEWARDEN_WORKER_METRICS_ADDRESS")
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @field_validator("auth_routes", "penalty_exempt_tiers", "webhook_urls", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return split_list(value)

    @field_validator("webhook_secret", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        return None if value == "" else value  # compose passes ${RATEWARDEN_WEBHOOK_SECRET:-} through

    @field_validator("webhook_secret")
    @classmethod
    def _whsec(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            text = value.get_secret_value()
            try:
                key = base64.b64decode(text.removeprefix("whsec_"), validate=True)
            except binascii.Error:
                key = b""
            if not text.startswith("whsec_") or not 24 <= len(key) <= 64:
                # the value is a secret: never echoed
                raise ValueError("RATEWARDEN_WEBHOOK_SECRET must be whsec_ then the base64 of 24 to 64 random "
                                 "bytes, e.g. python -c \"import base64, os; print('whsec_' + "
                                 "base64.b64encode(os.urandom(32)).decode())\"")
        return value
