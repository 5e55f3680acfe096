"""``manage.py check`` reports ratewarden's configuration mistakes before a request meets them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo_django"
BROKEN = """
tiers:
  anonymous:
    rules:
      - {name: per-ip, algorithm: fixed_window, limit: -5, period: 1m, scope: [ip]}
  free: {}
"""


@pytest.fixture
def broken_policy(tmp_path: Path) -> Path:
    path = tmp_path / "broken-policy.yaml"
    path.write_text(BROKEN)
    return path


def run_check() -> str:
    """The report of ``manage.py check --tag ratewarden`` (warnings fail too), run in this process;
    '' when clean."""
    try:
        call_command("check", "--tag", "ratewarden", "--fail-level", "WARNING")
    except SystemCheckError as exc:
        return str(exc)
    return ""


def test_an_unknown_key_is_an_error_naming_it_and_the_closest(settings) -> None:
    settings.RATEWARDEN = {**settings.RATEWARDEN, "REDIS_ULR": "redis://elsewhere:6379/0"}
    report = run_check()
    assert "ratewarden.E002" in report
    assert "RATEWARDEN['REDIS_ULR'] is not a ratewarden setting; did you mean 'REDIS_URL'?" in report


def test_an_unknown_key_fails_at_run_time_too(settings) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from ratewarden.enforcer.django.conf import enforcer_settings

    settings.RATEWARDEN = {"POLCY_FILE": "policy.yaml"}
    with pytest.raises(ImproperlyConfigured, match="did you mean 'POLICY_FILE'"):
        enforcer_settings()


def test_a_broken_policy_file_names_the_file_and_the_field(settings, broken_policy: Path) -> None:
    settings.RATEWARDEN = {**settings.RATEWARDEN, "POLICY_FILE": str(broken_policy)}
    report = run_check()
    assert "ratewarden.E004" in report
    assert f"{broken_policy}: tiers.anonymous.rules[0].limit: " in report


def test_an_invalid_value_names_the_setting(settings) -> None:
    settings.RATEWARDEN = {**settings.RATEWARDEN, "REDIS_URL": "http://cache:6379", "IPV6_PREFIX": 7}
    report = run_check()
    assert "RATEWARDEN['REDIS_URL'] (or RATEWARDEN_REDIS_URL): RATEWARDEN_REDIS_URL 'http://cache:6379'" in report
    assert "RATEWARDEN['IPV6_PREFIX']" in report and "ratewarden.E003" in report


def test_without_a_policy_file(settings) -> None:
    """The policy throttle cannot work without one (an error); the middleware limits only views with
    rules of their own (a warning); the drop-in throttles need none."""
    settings.RATEWARDEN = {}
    report = run_check()
    assert "ratewarden.E005" in report and "RatewardenThrottle (REST_FRAMEWORK['DEFAULT_THROTTLE_CLASSES'])" in report
    assert "ratewarden.W001" in report and "RatewardenMiddleware (settings.MIDDLEWARE) has no policy file" in report
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_CLASSES": [
        "ratewarden.enforcer.django.throttling.UserRateThrottle",
        "ratewarden.enforcer.django.throttling.AnonRateThrottle"]}
    report = run_check()
    assert "ratewarden.E005" not in report and "ratewarden.W001" in report
    settings.MIDDLEWARE = []
    assert run_check() == ""


def test_num_proxies_beside_trusted_proxies(settings) -> None:
    settings.RATEWARDEN = {**settings.RATEWARDEN, "TRUSTED_PROXIES": "10.0.0.0/8"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    report = run_check()
    assert "ratewarden.W002" in report and "REST_FRAMEWORK['NUM_PROXIES'] is not used" in report


def test_a_rate_the_drop_ins_cannot_read(settings) -> None:
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "billing": "100/month", "off": None}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    report = run_check()
    assert "REST_FRAMEWORK['DEFAULT_THROTTLE_RATES']['billing']: invalid throttle rate: invalid rate " \
           "'100/month': 'month' has no fixed length" in report
    assert "'off'" not in report  # None: not throttled, as in DRF


def manage_check(policy_file: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("RATEWARDEN_", "DJANGO_"))}
    env["RATEWARDEN_POLICY_FILE"] = str(policy_file)
    return subprocess.run([sys.executable, str(DEMO / "manage.py"), "check"], env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_manage_py_check_of_the_demo_project(broken_policy: Path) -> None:
    """The demo project's own ``manage.py check``: clean with its policy, failing with a broken one."""
    good = manage_check(DEMO.parent / "policy.yaml")
    assert good.returncode == 0, good.stderr
    assert "System check identified no issues" in good.stdout
    bad = manage_check(broken_policy)
    assert bad.returncode == 1
    assert "ratewarden.E004" in bad.stderr and f"{broken_policy}: tiers.anonymous.rules[0].limit" in bad.stderr


def test_an_invalid_value_fails_at_run_time_naming_the_setting(settings) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from ratewarden.enforcer.django.conf import enforcer_settings

    settings.RATEWARDEN = {**settings.RATEWARDEN, "IPV6_PREFIX": 7}
    with pytest.raises(ImproperlyConfigured, match=r"^RATEWARDEN\['IPV6_PREFIX'\] \(or RATEWARDEN_IPV6_PREFIX\): "):
        enforcer_settings()
