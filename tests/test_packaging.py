"""The distribution: one import package (``ratewarden``) with its data files, and a base install
that decides without any extra (built and installed here as a user would, in a fresh venv)."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOT_IN_BASE = ["aiokafka", "confluent-kafka", "typer", "rich", "uvicorn", "faust-streaming", "chdb-core-lite", "pandas",
               "pyarrow", "structlog", "fastapi", "django"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(ROOT)],
                   check=True, timeout=300)
    [built] = out.glob("ratewarden-*.whl")
    return built


def test_the_wheel_installs_one_import_package_with_its_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0].removesuffix(".py") for name in names if ".dist-info/" not in name}
    print(f"top-level import names in {wheel.name}: {sorted(top_level)}")
    assert top_level == {"ratewarden"}
    for data in ("ratewarden/py.typed", "ratewarden/enforcer/lua/decide.lua",
                 "ratewarden/enforcer/schema/request_event.schema.json", "ratewarden/analytics/console/index.html",
                 "ratewarden/analytics/console/js/app.js", "ratewarden/analytics/console/js/pages/keys.js",
                 "ratewarden/analytics/console/vendor/uplot/uPlot.iife.min.js",
                 "ratewarden/analytics/console/vendor/uplot/LICENSE",
                 "ratewarden/dashboards/json/overview.json", "ratewarden/dashboards/json/metrics.json",
                 "ratewarden/dashboards/provisioning/datasources/prometheus.yaml",
                 "ratewarden/dashboards/provisioning/prometheus/prometheus.yml", "ratewarden/examples/policy.yaml",
                 "ratewarden/examples/demo_fastapi/app.py"):
        assert data in names, data
    assert not [name for name in names if "demo_django" in name or name.startswith("ratewarden/tests")]


@pytest.fixture(scope="module")
def base_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtualenv holding the base wheel alone (dependencies pinned by the lock)."""
    home = tmp_path_factory.mktemp("base-venv")
    venv.create(home, with_pip=True)
    subprocess.run([home / "bin" / "python", "-m", "pip", "install", "--quiet", "-c",
                    ROOT / "requirements" / "lock.txt", wheel], check=True, timeout=600)
    yield home


@pytest.mark.slow
def test_the_base_install_decides_without_any_extra(base_venv: Path, tmp_path: Path) -> None:
    python = base_venv / "bin" / "python"
    listed = subprocess.run([python, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True,
                            check=True).stdout.lower()
    installed = {line.split("==")[0] for line in listed.splitlines()}
    print(f"base install: {sorted(installed)}")
    assert not installed & set(NOT_IN_BASE)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=tmp_path, timeout=60)

    decided = run(python, "-c", "import ratewarden.enforcer as e; print(e.Enforcer.__module__, "
                  "e.policy_from_mapping({'default_tier': 'anonymous', 'tiers': {'anonymous': {}}}).tiers)")
    assert decided.returncode == 0 and decided.stdout.startswith("ratewarden.enforcer.engine"), decided.stderr
    assert run(base_venv / "bin" / "ratewarden", "--version").stdout.startswith("ratewarden ")
    hint = run(base_venv / "bin" / "ratewarden", "worker")
    assert hint.returncode == 1 and hint.stderr.strip().endswith("pip install 'ratewarden[cli]'"), hint.stderr
    # the middleware is pure ASGI: it needs no framework; FastAPI's own forms need the extra
    assert run(python, "-c", "import ratewarden.enforcer.asgi").returncode == 0
    depends = run(python, "-c", "import ratewarden.enforcer.fastapi")
    assert depends.returncode == 1 and depends.stderr.strip().endswith("pip install 'ratewarden[fastapi]'"), \
        depends.stderr


def _pins(lock: Path) -> dict[str, str]:
    from packaging.utils import canonicalize_name

    pins = {}
    for line in lock.read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep and not line.startswith((" ", "#")):
            pins[canonicalize_name(name)] = version.split(";")[0].strip()
    return pins


def test_the_lock_files_agree_with_pyproject() -> None:
    """Every pin satisfies what pyproject.toml declares, and the floors file pins the declared floors
    (run scripts/lock after changing a dependency)."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [Requirement(text) for text in project["dependencies"]]
    declared += [Requirement(text) for extra in project["optional-dependencies"].values() for text in extra
                 if not text.startswith("ratewarden")]
    for lock in ("lock.txt", "floors.txt"):
        pins = _pins(ROOT / "requirements" / lock)
        for requirement in declared:
            pinned = pins.get(canonicalize_name(requirement.name))
            assert pinned is None or requirement.specifier.contains(pinned, prereleases=True), \
                f"requirements/{lock} pins {requirement.name}=={pinned}, outside {requirement}: run scripts/lock"
    floors = _pins(ROOT / "requirements" / "floors.txt")
    for text in project["dependencies"]:
        requirement = Requirement(text)
        [floor] = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        assert Version(floors[canonicalize_name(requirement.name)]) == Version(floor), \
            f"{requirement.name}: run scripts/lock"
