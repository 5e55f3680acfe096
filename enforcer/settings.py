"""Typed settings for the enforcer, read from ``RATEWARDEN_*`` environment variables."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["EnforcerSettings", "split_list"]


def split_list(value: object) -> object:
    """``'a, b'`` -> ``['a', 'b']`` for comma-separated environment values; anything else as is."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class EnforcerSettings(BaseSettings):
    """Everything the enforcer reads from its environment. See the README's settings table."""

    # errors name the setting and the problem; the value is left out (a Redis URL may hold a password)
    model_config = SettingsConfigDict(env_prefix="RATEWARDEN_", extra="ignore", hide_input_in_errors=True)

    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis/Valkey the limits live in")
    policy_file: Path | None = Field(None, description="YAML or TOML policy file")
    redis_budget_ms: float = Field(50.0, gt=0, description="a decision slower than this is decided without Redis")
    redis_retry_after_s: float = Field(
        1.0, gt=0, description="after a Redis failure, wait this long before trying it again")
    time_source: Literal["redis", "app"] = Field("redis", description="whose clock the scripts use")
    api_key_header: str = Field(
        "authorization", description="header carrying the API key ('authorization' reads a Bearer token)")
    api_key_secret: SecretStr | None = Field(None, description="HMAC secret API keys are hashed with")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="CIDRs whose X-Forwarded-For / Forwarded headers are believed"
    )
    ipv6_prefix: int = Field(64, ge=32, le=128, description="IPv6 clients are grouped by this prefix length")
    draft_headers: bool = Field(True, description="send RateLimit-Policy and RateLimit (IETF draft)")
    legacy_headers: bool = Field(True, description="send X-RateLimit-Limit/-Remaining/-Reset")
    shadow_headers: bool = Field(False, description="send X-Ratewarden-Shadow when a shadow rule would have denied")
    local_deny_cache: bool = Field(True, description="answer a client denied until T with 429 locally until T")
    gc_freeze: bool = Field(
        True, description="once the ASGI app has started, move what it built out of the garbage collector's "
                          "reach (gc.collect, then gc.freeze), so full collections stop pausing requests for "
                          "tens of milliseconds")
    fallback_share: float = Field(
        1.0, gt=0, le=1, description="while Redis is away, each process admits this share of every limit"
    )
    kafka_bootstrap: str | None = Field(None, description="Kafka bootstrap servers; unset: no events are published")
    kafka_topic: str = Field("ratewarden.requests", description="topic request events go to")
    publish_queue_size: int = Field(
        10_000, ge=1, description="events queued in memory before spilling to disk (librdkafka holds at most as "
                                  "many again)")
    publish_linger_ms: float = Field(20.0, ge=0, description="wait this long to fill a batch")
    publish_max_batch: int = Field(2_000, ge=1, description="events per batch")
    publish_compression: Literal["none", "lz4", "zstd", "snappy", "gzip"] = Field(
        "lz4", description="Kafka batch compression")
    publish_delivery_timeout_s: float = Field(
        10.0, gt=0, description="an event Kafka has not acknowledged by then is spilled (and replayed later)")
    publish_flush_timeout_s: float = Field(
        5.0, ge=0, description="at shutdown, wait this long for Kafka to acknowledge what is in flight; "
                               "the rest is spilled")
    spill_dir: Path = Field(Path("var/spill"), description="where events wait while Kafka is unreachable")
    spill_max_bytes: int = Field(256 * 2**20, ge=0, description="past this, events are dropped (and counted)")
    spill_segment_bytes: int = Field(16 * 2**20, ge=1024, description="spill files rotate at this size")
    service_name: str = Field("api", description="the service name put in events")
    instance_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")

    @field_validator("redis_url")
    @classmethod
    def _known_redis_url(cls, value: str) -> str:
        from .topology import parse_redis_url  # redis-py's clients load only once a URL is in use

        parse_redis_url(value)  # a ValueError naming the setting and what is wrong, without the password
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return split_list(value)
