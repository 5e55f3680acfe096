"""ratewarden for Django and Django REST Framework.

``RatewardenMiddleware`` limits every view (headers and a 429 problem+json body,
as the FastAPI middleware does) and adds the rate-limit headers to DRF responses;
``ratewarden.enforcer.django.throttling`` has DRF throttle classes with DRF's own contract;
``ratewarden.enforcer.django.decorators.ratelimit`` limits a plain view. Configured by
``settings.RATEWARDEN`` (keys as the ``RATEWARDEN_*`` variables, without the prefix), over the
environment. In ``INSTALLED_APPS`` this package is an app whose system checks validate that
configuration and the policy file at ``manage.py check``.
"""

from ratewarden.extras import require

require("django", "django", feature="ratewarden.enforcer.django")

from .conf import get_enforcer, reset_enforcer  # noqa: E402 - after the hint for a missing extra
from .middleware import RatewardenMiddleware  # noqa: E402
from .views import metrics_view  # noqa: E402

__all__ = ["RatewardenMiddleware", "get_enforcer", "metrics_view", "reset_enforcer"]
