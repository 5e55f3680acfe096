"""The process-wide enforcer for a Django project, built from ``settings.RATEWARDEN``."""

from __future__ import annotations

import atexit
import difflib
import functools
import inspect
import threading
from collections.abc import Mapping
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string
from pydantic import ValidationError

from ..engine import SyncEnforcer
from ..gate import Gate
from ..identity import Identity
from ..loader import PolicyError, load_policy
from ..logs import get_logger
from ..policy import Policy, Tier
from ..publisher import EventPublisher
from ..routes import UNMATCHED_ROUTE, brace_template
from ..settings import EnforcerSettings

__all__ = ["enforcer_settings", "get_enforcer", "get_gate", "get_publisher", "identify_request", "ratewarden_conf",
           "reset_enforcer", "route_of", "settings_problems", "unknown_keys"]

log = get_logger("ratewarden.enforcer")
_enforcer: SyncEnforcer | None = None
_publisher: EventPublisher | None = None
_publisher_checked = False
_has_policy = False
_gate: Gate | None = None
# without a policy file: no tier has rules of its own (the drop-in throttles bring theirs)
_EMPTY_POLICY = Policy(tiers={"anonymous": Tier(), "free": Tier()})
_lock = threading.Lock()
RESOLVER_KEYS = ("USER_RESOLVER", "TIER_RESOLVER")  # functions of the request, not enforcer settings


def ratewarden_conf() -> Mapping[str, Any]:
    """``settings.RATEWARDEN`` (empty when unset); ImproperlyConfigured if it is not a dict."""
    conf = getattr(django_settings, "RATEWARDEN", None) or {}
    if not isinstance(conf, Mapping):
        raise ImproperlyConfigured(f"settings.RATEWARDEN must be a dict, not {type(conf).__name__}")
    return conf


def unknown_keys(conf: Mapping[str, Any]) -> list[str]:
    """A message for each key of ``conf`` that is no setting, with the closest one (a typo such as
    ``REDIS_ULR`` would otherwise be ignored and the default used)."""
    known = [name.upper() for name in EnforcerSettings.model_fields] + list(RESOLVER_KEYS)
    messages = []
    for key in conf:
        if str(key).upper() not in known:
            close = difflib.get_close_matches(str(key).upper(), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(known))}"
            messages.append(f"RATEWARDEN[{key!r}] is not a ratewarden setting{hint}")
    return messages


def enforcer_settings() -> EnforcerSettings:
    """The enforcer's settings: ``settings.RATEWARDEN`` over the ``RATEWARDEN_*`` environment.
    ImproperlyConfigured names every unknown key and every invalid value."""
    conf = ratewarden_conf()
    unknown = unknown_keys(conf)
    if unknown:
        raise ImproperlyConfigured("\n".join(unknown))
    try:
        return EnforcerSettings(**{str(key).lower(): value for key, value in conf.items()})
    except ValidationError as exc:
        raise ImproperlyConfigured("\n".join(settings_problems(exc))) from None


def settings_problems(exc: ValidationError) -> list[str]:
    """Each invalid value of ``settings.RATEWARDEN`` (or the environment), after the key it is in."""
    problems = []
    for error in exc.errors(include_url=False):
        field = ".".join(str(part) for part in error["loc"]).upper()
        problems.append(f"RATEWARDEN[{field!r}] (or RATEWARDEN_{field}): {error['msg'].removeprefix('Value error, ')}")
    return problems


def get_enforcer(*, policy_required: bool = False) -> SyncEnforcer:
    """The enforcer of this process, started on first use.

    Its policy is ``RATEWARDEN['POLICY_FILE']``. Without one no tier has rules of its own: DRF's
    drop-in throttles and ``@ratelimit`` bring theirs, and the middleware limits only the views
    that carry rules (``manage.py check`` warns, ratewarden.W001). ``policy_required`` (for
    ``RatewardenThrottle``, which applies nothing but the policy) raises ImproperlyConfigured instead.
    """
    global _enforcer, _has_policy
    if _enforcer is None:
        with _lock:
            if _enforcer is None:
                settings = enforcer_settings()
                policy = _EMPTY_POLICY
                if settings.policy_file is not None:
                    try:
                        policy = load_policy(settings.policy_file)
                    except PolicyError as exc:
                        raise ImproperlyConfigured(str(exc)) from None
                else:
                    log.warning("no_policy_file", effect="only drop-in DRF throttles and view decorators limit",
                                setting="RATEWARDEN['POLICY_FILE']")
                enforcer = SyncEnforcer(policy, settings)
                enforcer.start()
                _has_policy = settings.policy_file is not None
                _enforcer = enforcer
    if policy_required and not _has_policy:
        raise ImproperlyConfigured("set RATEWARDEN['POLICY_FILE'] (or RATEWARDEN_POLICY_FILE): RatewardenThrottle "
                                   "applies its tiers (the DRF drop-in throttles and @ratelimit need none)")
    return _enforcer


def get_gate() -> Gate:
    """The gate of this process's enforcer (headers, denials, events, the resolvers of
    ``RATEWARDEN['USER_RESOLVER']``/``['TIER_RESOLVER']``), rebuilt with the enforcer.
    Needs no policy file (see :func:`get_enforcer`)."""
    global _gate
    enforcer = get_enforcer()
    gate = _gate
    if gate is None or gate.enforcer is not enforcer:
        gate = _gate = Gate(enforcer, publisher=get_publisher(), **_resolvers())
    return gate


def _resolvers() -> dict[str, Any]:
    """``USER_RESOLVER`` and ``TIER_RESOLVER`` of ``settings.RATEWARDEN`` (dotted paths or functions),
    as the gate's ``user_resolver`` and ``tier_resolver``."""
    conf = ratewarden_conf()
    found: dict[str, Any] = {}
    for key in RESOLVER_KEYS:
        value = conf.get(key)
        if value is None:
            continue
        try:
            resolver = import_string(value) if isinstance(value, str) else value
        except ImportError as exc:
            raise ImproperlyConfigured(f"RATEWARDEN[{key!r}]: cannot import {value!r}: {exc}") from None
        if not callable(resolver) or inspect.iscoroutinefunction(resolver):
            raise ImproperlyConfigured(f"RATEWARDEN[{key!r}] must be a plain function of the request (Django "
                                       f"calls it from sync code), not {value!r}")
        found[key.lower()] = resolver
    return found


def get_publisher() -> EventPublisher | None:
    """The event publisher of this process (a sender thread), or None without Kafka settings."""
    global _publisher, _publisher_checked
    if not _publisher_checked:
        settings = get_enforcer().settings  # before the lock, which building it takes
        with _lock:
            if not _publisher_checked:
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
    """``METHOD /template`` of the URL pattern that resolved ``request`` (``<int:id>`` becomes ``{id}``;
    the root pattern ``""`` is ``/``), else the unmatched route."""
    match = getattr(request, "resolver_match", None)
    template = getattr(match, "route", None)
    if template is None:
        return UNMATCHED_ROUTE  # the one label every adapter gives requests no route matches
    return f"{request.method} {_template(template)}"


@functools.lru_cache(maxsize=4096)
def _template(route: str) -> str:
    """A Django URL pattern in the policy's form, converted once per pattern (not per request)."""
    return brace_template(route)


def identify_request(enforcer: SyncEnforcer, request: Any) -> Identity:
    """The caller of a Django (or DRF) request: API key, else the user (``USER_RESOLVER``'s, else the
    authenticated ``request.user``), else the client IP (through trusted proxies), read from
    ``request.META`` by the gate; in the tier ``TIER_RESOLVER`` names, if it names one."""
    gate = get_gate()
    ip, api_key = gate.environ_caller(request.META)
    user_id = gate.user_id(gate.user_resolver(request)) if gate.user_resolver is not None else None
    if user_id is None:
        user = getattr(request, "user", None)
        user_id = str(user.pk) if user is not None and getattr(user, "is_authenticated", False) else None
    identity = enforcer.identify(ip=ip, api_key=api_key, user=user_id)
    if gate.tier_resolver is not None:
        gate.assign_tier(identity, gate.tier_resolver(request))
    return identity
