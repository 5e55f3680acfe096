"""ratewarden for Django and Django REST Framework.

``RatewardenMiddleware`` limits every view (headers and a 429 problem+json body,
as the FastAPI middleware does) and adds the rate-limit headers to DRF responses;
``enforcer.django.throttling`` has DRF throttle classes with DRF's own contract.
Configured by ``settings.RATEWARDEN`` (keys as the ``RATEWARDEN_*`` variables,
without the prefix), over the environment.
"""

from .conf import get_enforcer, reset_enforcer
from .middleware import RatewardenMiddleware

__all__ = ["RatewardenMiddleware", "get_enforcer", "reset_enforcer"]
