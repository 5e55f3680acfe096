"""The Django app of ratewarden: add ``"ratewarden.enforcer.django"`` to ``INSTALLED_APPS`` and
``manage.py check`` validates ``settings.RATEWARDEN``, the policy file and DRF's throttle rates."""

from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class RatewardenConfig(AppConfig):
    """Registers ratewarden's system checks (tag ``ratewarden``)."""

    name = "ratewarden.enforcer.django"
    label = "ratewarden"
    verbose_name = "ratewarden"

    def ready(self) -> None:
        from .checks import check_ratewarden

        checks.register(check_ratewarden, "ratewarden")
