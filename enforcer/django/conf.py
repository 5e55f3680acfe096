"""The process-wide enforcer for a Django project, built from ``settings.RATEWARDEN``."""

from __future__ import annotations

import atexit
import re
import threading
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from pydantic import ValidationError

from ..engine import SyncEnforcer
from ..identity import Identity, bearer_token
from ..loader import PolicyError, load_policy
from ..logs import get_logger
from ..publisher import EventPublisher
from ..settings import EnforcerSettings

__all__ = ["get_enforcer", "get_publisher", "reset_enforcer", "identify_request", "route_of"]

log = get_logger("ratewarden.enforcer")
_enforcer: SyncEnforcer | None = None
_publisher: EventPublisher | None = None
_publisher_checked = False
_lock = threading.Lock()
_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def _settings() -> EnforcerSettings:
    conf: dict[str, Any] = getattr(django_settings, "RATEWARDEN", {}) or {}
    try:
        return EnforcerSettings(**{key.lower(): value for key, value in conf.items()})
    except ValidationError as exc:
        raise ImproperlyConfigured(f"settings.RATEWARDEN is invalid:\n{exc}") from None


def get_enforcer() -> SyncEnforcer:
    """The enforcer of this process, started on first use."""
    global _enforcer
    if _enforcer is None:
        with _lock:
            if _enforcer is None:
                settings = _settings()
                if settings.policy_file is None:
                    raise ImproperlyConfigured("set RATEWARDEN['POLICY_FILE'] (or RATEWARDEN_POLICY_FILE)")
                try:
                    policy = load_policy(settings.policy_file)
                except PolicyError as exc:
                    raise ImproperlyConfigured(str(exc)) from None
                enforcer = SyncEnforcer(policy, settings)
                enforcer.start()
                _enforcer = enforcer
    return _enforcer


def get_publisher() -> EventPublisher | None:
    """The event publisher of this process (a sender thread), or None without Kafka settings."""
    global _publisher, _publisher_checked
    if not _publisher_checked:
        with _lock:
            if not _publisher_checked:
                settings = get_enforcer().settings
                if settings.kafka_bootstrap:
                    _publisher = EventPublisher(settings)
                    _publisher.start_thread()
                    atexit.register(_publisher.close)
                else:
                    log.info("events_off", reason="no Kafka bootstrap configured (RATEWARDEN_KAFKA_BOOTSTRAP)")
                _publisher_checked = True
    return _publisher


def reset_enforcer() -> None:
    """Close the enforcer and publisher (flushing it); the next request builds new ones."""
    global _enforcer, _publisher, _publisher_checked
    with _lock:
        if _enforcer is not None:
            _enforcer.close()
        if _publisher is not None:
            _publisher.close()
        _enforcer, _publisher, _publisher_checked = None, None, False


@receiver(setting_changed)
def _on_setting_changed(setting: str, **_: object) -> None:
    if setting == "RATEWARDEN":
        reset_enforcer()


def route_of(request: Any) -> str:
    """``METHOD /template`` of the URL pattern that resolved ``request`` (``<int:id>`` becomes ``{id}``)."""
    match = getattr(request, "resolver_match", None)
    template = match.route if match is not None and match.route else None
    if template is None:
        return f"{request.method} * (unmatched)"
    path = _CONVERTER.sub(r"{\1}", template).lstrip("^").rstrip("$")
    return f"{request.method} /{path}"


def identify_request(enforcer: SyncEnforcer, request: Any) -> Identity:
    """The caller of a Django request: API key, authenticated user, or client IP (through trusted proxies)."""
    meta = request.META
    ip = enforcer.ips.resolve(meta.get("REMOTE_ADDR"), meta.get("HTTP_X_FORWARDED_FOR"), meta.get("HTTP_FORWARDED"))
    header = enforcer.settings.api_key_header.lower()
    raw_key = meta.get("HTTP_" + header.upper().replace("-", "_"))
    api_key = bearer_token(raw_key) if raw_key and header == "authorization" else raw_key
    user = getattr(request, "user", None)
    user_id = str(user.pk) if user is not None and getattr(user, "is_authenticated", False) else None
    return enforcer.identify(ip=ip, api_key=api_key or None, user=user_id)
