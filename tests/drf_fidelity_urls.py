"""Views of the DRF fidelity tests: each uses ratewarden's drop-in throttles the way DRF's docs use DRF's."""

from types import SimpleNamespace

from django.urls import path
from rest_framework.authentication import BaseAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView

from ratewarden.enforcer.django.throttling import (
    AnonRateThrottle,
    ScopedRateThrottle,
    SimpleRateThrottle,
    UserRateThrottle,
)


class HeaderUser(BaseAuthentication):
    """``X-User: <id>`` authenticates as that user (no database needed); no header: anonymous."""

    def authenticate(self, request):
        user_id = request.META.get("HTTP_X_USER")
        return (SimpleNamespace(pk=user_id, is_authenticated=True), None) if user_id else None


class ClassRates(UserRateThrottle):
    """Rates from the class's own THROTTLE_RATES, a scope DEFAULT_THROTTLE_RATES does not have."""

    scope = "class-burst"
    THROTTLE_RATES = {"class-burst": "2/min"}


class ClassRate(UserRateThrottle):
    rate = "3/min"  # preferred to DEFAULT_THROTTLE_RATES['user']


class Burst(UserRateThrottle):
    scope = "burst"


class Sustained(UserRateThrottle):
    scope = "sustained"


class ExemptsStaff(SimpleRateThrottle):
    """get_cache_key returns None for a staff header: those requests are not throttled."""

    scope = "custom"

    def get_cache_key(self, request, view):
        if request.META.get("HTTP_X_STAFF"):
            return None
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class PerTenant(SimpleRateThrottle):
    """One count per tenant header, whatever the caller's address."""

    scope = "custom"

    def get_cache_key(self, request, view):
        return f"tenant-{request.META.get('HTTP_X_TENANT', 'none')}"


FAILURES: list[str] = []


class RecordsFailures(AnonRateThrottle):
    """DRF's throttle_failure hook, overridden to record which key was throttled."""

    def throttle_failure(self):
        FAILURES.append(self.key)
        return super().throttle_failure()


def view(*throttles, scope=None):
    attrs = {"authentication_classes": [HeaderUser], "throttle_classes": list(throttles),
             "get": lambda self, request, **kwargs: Response({"ok": True})}
    if scope is not None:
        attrs["throttle_scope"] = scope
    return type("View", (APIView,), attrs).as_view()


urlpatterns = [
    path("class-rates", view(ClassRates)),
    path("class-rate", view(ClassRate)),
    path("user", view(UserRateThrottle)),
    path("anon", view(AnonRateThrottle)),
    path("records-failures", view(RecordsFailures)),
    path("burst-sustained", view(Burst, Sustained)),
    path("exempts-staff", view(ExemptsStaff)),
    path("per-tenant", view(PerTenant)),
    path("contacts", view(ScopedRateThrottle, scope="contacts")),
    path("contacts/<int:pk>", view(ScopedRateThrottle, scope="contacts")),
    path("uploads", view(ScopedRateThrottle, scope="uploads")),
]
