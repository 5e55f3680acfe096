"""System checks of ratewarden in a Django project, run by ``manage.py check`` (and before
``runserver`` and ``migrate``), so a mistake is reported before the first request meets it:

- ``ratewarden.E001``: ``settings.RATEWARDEN`` is not a dict;
- ``ratewarden.E002``: a key of it is no setting (the closest one is suggested);
- ``ratewarden.E003``: a setting's value is invalid (from ``RATEWARDEN`` or ``RATEWARDEN_*``);
- ``ratewarden.E004``: the policy file cannot be read or is invalid (the file and the field named);
- ``ratewarden.E005``: ``RatewardenThrottle`` (the policy's throttle) is configured without a policy file;
- ``ratewarden.E006``: a DRF throttle rate the drop-in throttles cannot read (``"100/month"``);
- ``ratewarden.W001``: the middleware is installed without a policy file (it then limits only views
  with ``@ratelimit`` or ``@limit`` rules);
- ``ratewarden.W002``: DRF's ``NUM_PROXIES`` and ``RATEWARDEN_TRUSTED_PROXIES`` are both set (the
  drop-in throttles read client addresses through the trusted proxies only).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings as django_settings
from django.core.checks import CheckMessage, Error, Warning
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string
from pydantic import ValidationError

from ..loader import PolicyError, load_policy
from ..settings import EnforcerSettings
from .conf import ratewarden_conf, settings_problems, unknown_keys

__all__ = ["check_ratewarden"]


def check_ratewarden(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """Every problem with ratewarden's settings, policy file and the DRF rates it reads."""
    try:
        conf = ratewarden_conf()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="ratewarden.E001", obj="settings.RATEWARDEN")]
    errors: list[CheckMessage] = [
        Error(message, id="ratewarden.E002", obj="settings.RATEWARDEN") for message in unknown_keys(conf)]
    try:  # the known keys (unknown ones were reported above)
        settings = EnforcerSettings(**{str(key).lower(): value for key, value in conf.items()})
    except ValidationError as exc:
        return errors + [Error(problem, id="ratewarden.E003", obj="settings.RATEWARDEN")
                         for problem in settings_problems(exc)]
    if settings.policy_file is not None:
        errors += _policy_errors(str(settings.policy_file))
    else:
        errors += _without_policy()
    rest_framework = getattr(django_settings, "REST_FRAMEWORK", {}) or {}
    if settings.trusted_proxies and rest_framework.get("NUM_PROXIES") is not None:
        errors.append(Warning(
            "REST_FRAMEWORK['NUM_PROXIES'] is not used: with RATEWARDEN_TRUSTED_PROXIES set, ratewarden's throttles "
            "read the client address through those proxies", hint="remove one of the two settings",
            id="ratewarden.W002", obj="settings.REST_FRAMEWORK"))
    return errors + _rate_errors()


def _policy_errors(path: str) -> list[CheckMessage]:
    try:
        load_policy(path)
    except PolicyError as exc:
        return [Error(f"{exc.source}: {field or '(top level)'}: {message}", id="ratewarden.E004", obj=exc.source)
                for field, message in exc.problems]
    return []


def _classes(paths: Iterable[object]) -> list[type]:
    found = []
    for path in paths:
        try:
            found.append(import_string(path) if isinstance(path, str) else path)
        except ImportError:
            continue  # Django and DRF report what cannot be imported
    return [cls for cls in found if isinstance(cls, type)]


def _without_policy() -> list[CheckMessage]:
    """What the configured parts that apply the policy say when there is none."""
    from .middleware import RatewardenMiddleware

    found: list[CheckMessage] = []
    hint = "set RATEWARDEN['POLICY_FILE'] (or RATEWARDEN_POLICY_FILE)"
    if any(issubclass(cls, RatewardenMiddleware) for cls in _classes(getattr(django_settings, "MIDDLEWARE", ()))):
        found.append(Warning(
            "RatewardenMiddleware (settings.MIDDLEWARE) has no policy file: it limits only views with "
            "@ratelimit or @limit rules", hint=hint, id="ratewarden.W001", obj="settings.MIDDLEWARE"))
    rest_framework = getattr(django_settings, "REST_FRAMEWORK", {}) or {}
    throttles = rest_framework.get("DEFAULT_THROTTLE_CLASSES", ())
    if throttles:
        from .throttling import RatewardenThrottle

        if any(issubclass(cls, RatewardenThrottle) and cls.policy_required for cls in _classes(throttles)):
            found.append(Error(
                "RatewardenThrottle (REST_FRAMEWORK['DEFAULT_THROTTLE_CLASSES']) applies the policy's tiers, "
                "but no policy file is set", hint=hint + "; DRF's drop-in throttles "
                "(ratewarden.enforcer.django.throttling.UserRateThrottle, ...) need none",
                id="ratewarden.E005", obj="settings.REST_FRAMEWORK"))
    return found


def _rate_errors() -> list[CheckMessage]:
    rest_framework = getattr(django_settings, "REST_FRAMEWORK", {}) or {}
    rates = rest_framework.get("DEFAULT_THROTTLE_RATES") or {}
    if not rates:
        return []
    from .throttling import parse_rate

    errors: list[CheckMessage] = []
    for scope, rate in rates.items():
        try:
            parse_rate(rate)
        except ImproperlyConfigured as exc:
            errors.append(Error(f"REST_FRAMEWORK['DEFAULT_THROTTLE_RATES'][{scope!r}]: {exc}", id="ratewarden.E006",
                                obj="settings.REST_FRAMEWORK"))
    return errors
