"""ratewarden's drop-in throttles against DRF's documented behaviour (docs/api-guide/throttling.md,
docs/api-guide/settings.md and rest_framework/throttling.py, DRF 3.15-3.18), in a project that
only swapped the import: no policy file, no ratewarden middleware."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from ratewarden.enforcer.django import reset_enforcer
from ratewarden.enforcer.django.throttling import SimpleRateThrottle, UserRateThrottle, parse_rate

pytestmark = pytest.mark.urls("tests.drf_fidelity_urls")
RATES = {"user": "4/min", "anon": "2/min", "burst": "3/min", "sustained": "5/day", "custom": "2/min",
         "contacts": "3/min", "uploads": None}


@pytest.fixture(autouse=True)
def drop_in_project(settings, redis_sync: redis.Redis, redis_url: str) -> Iterator[None]:
    settings.RATEWARDEN = {"REDIS_URL": redis_url, "REDIS_BUDGET_MS": 2000}  # no POLICY_FILE
    settings.MIDDLEWARE = []
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": dict(RATES)}
    yield
    reset_enforcer()


def statuses(path: str, count: int, **extra: str) -> list[int]:
    client = Client(**extra)
    return [client.get(path).status_code for _ in range(count)]


def test_rates_from_a_throttle_rates_class_attribute() -> None:
    """throttling.py: ``THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES``, read by ``get_rate()``
    as ``self.THROTTLE_RATES[self.scope]``: a class setting its own THROTTLE_RATES is limited by them."""
    assert statuses("/class-rates", 3, REMOTE_ADDR="192.0.2.1") == [200, 200, 429]


def test_a_rate_property_on_the_class_is_preferred() -> None:
    """Docs: "The allowed request rate is determined from one of the following (in order of preference).
    The `rate` property on the class, ... The `DEFAULT_THROTTLE_RATES['user']` setting." """
    assert statuses("/class-rate", 4, REMOTE_ADDR="192.0.2.2") == [200, 200, 200, 429]
    assert statuses("/user", 5, REMOTE_ADDR="192.0.2.3") == [200] * 4 + [429]  # 'user': '4/min'


def test_a_missing_scope_or_rate_is_improperly_configured() -> None:
    """throttling.py: "You must set either `.scope` or `.rate` for '%s' throttle" and
    "No default throttle rate set for '%s' scope"."""
    class Neither(SimpleRateThrottle):
        pass

    class UnknownScope(UserRateThrottle):
        scope = "nowhere"

    with pytest.raises(ImproperlyConfigured, match="You must set either `.scope` or `.rate` for 'Neither'"):
        Neither()
    with pytest.raises(ImproperlyConfigured, match="No default throttle rate set for 'nowhere' scope"):
        UnknownScope()


def test_parse_rate_of_none_is_none_none() -> None:
    """throttling.py: ``parse_rate``: "if rate is None: return (None, None)"; docs: abbreviations
    "like `sec`, `min`, `hr` are allowed"."""
    assert parse_rate(None) == (None, None)
    assert UserRateThrottle().parse_rate(None) == (None, None)
    assert parse_rate("100/hr") == (100, 3600) and parse_rate("60/min") == (60, 60)
    assert parse_rate("1000/day") == (1000, 86400) and parse_rate("10/second") == (10, 1)


def test_a_scope_whose_rate_is_none_is_not_throttled() -> None:
    """throttling.py ``allow_request``: "if self.rate is None: return True" (a rate set to None)."""
    assert statuses("/uploads", 10, REMOTE_ADDR="192.0.2.4") == [200] * 10


def test_get_cache_key_returning_none_is_not_throttled() -> None:
    """throttling.py ``get_cache_key``: "May return `None` if the request should not be throttled." """
    assert statuses("/exempts-staff", 5, REMOTE_ADDR="192.0.2.5", HTTP_X_STAFF="1") == [200] * 5
    assert statuses("/exempts-staff", 3, REMOTE_ADDR="192.0.2.5") == [200, 200, 429]  # 'custom': '2/min'


def test_an_overridden_get_cache_key_is_the_counter(redis_sync: redis.Redis) -> None:
    """throttling.py: "A simple cache implementation, that only requires `.get_cache_key()` to be
    overridden": what it returns is the key counted, whoever sends the request."""
    assert statuses("/per-tenant", 1, REMOTE_ADDR="192.0.2.6", HTTP_X_TENANT="acme") == [200]
    assert statuses("/per-tenant", 2, REMOTE_ADDR="192.0.2.7", HTTP_X_TENANT="acme") == [200, 429]
    assert statuses("/per-tenant", 1, REMOTE_ADDR="192.0.2.7", HTTP_X_TENANT="other") == [200]
    assert any(b"tenant-acme" in key for key in redis_sync.scan_iter("rw:*"))


def test_num_proxies_picks_the_client_address(settings) -> None:
    """Docs: "If set to non-zero then the client IP will be identified as being the last IP address in
    the `X-Forwarded-For` header, once any application proxy IP addresses have first been excluded.
    If set to zero, then the `REMOTE_ADDR` value will always be used as the identifying IP address." """
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    behind_proxy = {"REMOTE_ADDR": "10.0.0.1"}
    assert statuses("/anon", 3, HTTP_X_FORWARDED_FOR="198.51.100.1", **behind_proxy) == [200, 200, 429]
    # another client behind the same proxy has its own count; a spoofed first hop changes nothing
    assert statuses("/anon", 2, HTTP_X_FORWARDED_FOR="198.51.100.2", **behind_proxy) == [200, 200]
    assert statuses("/anon", 1, HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.2", **behind_proxy) == [429]
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 0}
    assert statuses("/anon", 3, HTTP_X_FORWARDED_FOR="198.51.100.3", REMOTE_ADDR="10.0.0.2") == [200, 200, 429]
    assert statuses("/anon", 1, HTTP_X_FORWARDED_FOR="198.51.100.4", REMOTE_ADDR="10.0.0.2") == [429]


def test_trusted_proxies_take_precedence_over_num_proxies(settings, redis_url: str) -> None:
    """With RATEWARDEN_TRUSTED_PROXIES set, the forwarding headers are read right to left through
    the trusted proxies, whatever NUM_PROXIES says (NUM_PROXIES=1 would name the second proxy)."""
    settings.RATEWARDEN = {**settings.RATEWARDEN, "TRUSTED_PROXIES": "10.0.0.0/8"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    first = statuses("/anon", 1, REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.9, 10.0.0.7")
    second = statuses("/anon", 2, REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.9, 10.0.0.8")
    assert first + second == [200, 200, 429]


def test_without_num_proxies_an_untrusted_forwarded_for_is_not_believed() -> None:
    """DRF (NUM_PROXIES None) would key by any X-Forwarded-For a client writes; its docs warn
    "Deliberately malicious actors will always be able to spoof IP origins". The drop-ins use the
    socket's address unless NUM_PROXIES or RATEWARDEN_TRUSTED_PROXIES says otherwise."""
    sent = [statuses("/anon", 1, REMOTE_ADDR="192.0.2.8", HTTP_X_FORWARDED_FOR=f"203.0.113.{i}")[0] for i in range(3)]
    assert sent == [200, 200, 429]


def test_wait_is_retry_after_and_the_detail() -> None:
    """Docs: "If the `.wait()` method is implemented and the request is throttled, then a `Retry-After`
    header will be included in the response"; DRF's wait() is the time until the oldest request of
    the window leaves it (at most the period)."""
    client = Client(REMOTE_ADDR="192.0.2.9")
    client.get("/anon")
    client.get("/anon")
    denied = client.get("/anon")
    assert denied.status_code == 429
    retry_after = int(denied["Retry-After"])
    assert 1 <= retry_after <= 60  # 'anon': '2/min'
    assert denied.json() == {"detail": f"Request was throttled. Expected available in {retry_after} "
                                       f"second{'s' if retry_after != 1 else ''}."}
    throttle = UserRateThrottle()
    assert throttle.wait() is None  # nothing denied yet


def test_throttle_failure_is_called_on_a_denial() -> None:
    """throttling.py: ``throttle_failure``: "Called when a request to the API has failed due to
    throttling." (``allow_request`` returns what it returns)."""
    from tests.drf_fidelity_urls import FAILURES

    FAILURES.clear()
    assert statuses("/records-failures", 3, REMOTE_ADDR="192.0.2.16") == [200, 200, 429]
    assert FAILURES == ["throttle_anon_192.0.2.16"]


def test_anon_throttle_only_throttles_unauthenticated_users() -> None:
    """Docs: "The `AnonRateThrottle` will only ever throttle unauthenticated users." """
    assert statuses("/anon", 5, REMOTE_ADDR="192.0.2.10", HTTP_X_USER="7") == [200] * 5
    assert statuses("/anon", 3, REMOTE_ADDR="192.0.2.10") == [200, 200, 429]


def test_user_throttle_counts_per_user_then_per_address() -> None:
    """Docs: "The user id is used to generate a unique key to throttle against. Unauthenticated requests
    will fall back to using the IP address of the incoming request" """
    assert statuses("/user", 2, REMOTE_ADDR="192.0.2.11", HTTP_X_USER="42") == [200, 200]
    assert statuses("/user", 3, REMOTE_ADDR="192.0.2.12", HTTP_X_USER="42") == [200, 200, 429]  # same user
    assert statuses("/user", 4, REMOTE_ADDR="192.0.2.12") == [200] * 4  # anonymous from that address: its own


def test_several_user_throttles_with_their_own_scope() -> None:
    """Docs: "An API may have multiple `UserRateThrottles` in place at the same time. To do so, override
    `UserRateThrottle` and set a unique "scope" for each class." ('burst': 3/min, 'sustained': 5/day)"""
    assert statuses("/burst-sustained", 4, REMOTE_ADDR="192.0.2.13") == [200, 200, 200, 429]


def test_scoped_throttle_shares_a_scope_between_views() -> None:
    """Docs: "User requests to either `ContactListView` or `ContactDetailView` would be restricted to a
    total of 1000 requests per-day." (here 'contacts': 3/min)"""
    client = Client(REMOTE_ADDR="192.0.2.14")
    codes = [client.get("/contacts").status_code, client.get("/contacts/1").status_code,
             client.get("/contacts/2").status_code, client.get("/contacts").status_code]
    assert codes == [200, 200, 200, 429]


def test_with_the_middleware_and_still_no_policy_file(settings) -> None:
    """The middleware adds the drop-ins' rate-limit headers; a missing policy file is no 500."""
    settings.MIDDLEWARE = ["ratewarden.enforcer.django.RatewardenMiddleware"]
    client = Client(REMOTE_ADDR="192.0.2.15")
    responses = [client.get("/anon") for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[0]["RateLimit-Policy"] == '"drf-anon";q=2;w=60' and responses[0]["X-RateLimit-Remaining"] == "1"
