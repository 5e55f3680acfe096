"""Typed settings for the enforcer, read from ``RATEWARDEN_*`` environment variables."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["EnforcerSettings"]


def _split_list(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class EnforcerSettings(BaseSettings):
    """Everything the enforcer reads from its environment. See the README's settings table."""

    model_config = SettingsConfigDict(env_prefix="RATEWARDEN_", extra="ignore")

    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis/Valkey the limits live in")
    policy_file: Path | None = Field(None, description="YAML or TOML policy file")
    redis_budget_ms: float = Field(50.0, gt=0, description="a decision slower than this is decided without Redis")
    redis_retry_after_s: float = Field(1.0, gt=0, description="after a Redis failure, wait this long before trying it again")
    time_source: Literal["redis", "app"] = Field("redis", description="whose clock the scripts use")
    api_key_header: str = Field("authorization", description="header carrying the API key ('authorization' reads a Bearer token)")
    api_key_secret: SecretStr | None = Field(None, description="HMAC secret API keys are hashed with")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="CIDRs whose X-Forwarded-For / Forwarded headers are believed"
    )
    ipv6_prefix: int = Field(64, ge=32, le=128, description="IPv6 clients are grouped by this prefix length")
    draft_headers: bool = Field(True, description="send RateLimit-Policy and RateLimit (IETF draft)")
    legacy_headers: bool = Field(True, description="send X-RateLimit-Limit/-Remaining/-Reset")
    local_deny_cache: bool = Field(True, description="answer a client denied until T with 429 locally until T")
    fallback_share: float = Field(
        1.0, gt=0, le=1, description="while Redis is away, each process admits this share of every limit"
    )
    service_name: str = Field("api", description="the service name put in events")
    instance_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return _split_list(value)
