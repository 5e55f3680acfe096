"""What each install brings: the wheel built here, installed from the lock into fresh virtualenvs,
one per extra set and one per Docker image target (no Docker engine runs here, so an image's
Python contents are measured as the same install in a venv).

    python bench/install_size.py [--quick]

Prints the size of site-packages and the package count for each, flags any heavy package
(Faust, chDB, pandas, pyarrow, aiokafka, confluent-kafka, typer, rich, uvicorn) where it must not
be, and ends with one JSON line. ``--quick`` measures the base install and the API image only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "lock.txt"
HEAVY = {"faust-streaming", "chdb-core-lite", "pandas", "pyarrow", "aiokafka", "confluent-kafka", "typer", "rich",
         "uvicorn"}
# name: (extras of the wheel, further requirements, heavy packages allowed)
INSTALLS: dict[str, tuple[str, list[str], set[str]]] = {
    "base": ("", [], set()),
    "base+fastapi": ("fastapi", [], set()),
    "base+django": ("django", [], set()),
    "api image": ("fastapi,kafka", ["uvicorn[standard]"], {"confluent-kafka", "uvicorn"}),
    "worker image": ("stream,analytics,dashboards,cli", [], HEAVY - {"chdb-core-lite", "pandas", "pyarrow"}),
    "all": ("all", [], HEAVY),
}
QUICK = ("base", "api image")


def build_wheel(out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(ROOT)],
                   check=True)
    return next(out.glob("ratewarden-*.whl"))


def measure(wheel: Path, extras: str, more: list[str], home: Path) -> tuple[int, set[str]]:
    """Bytes under site-packages (pip and setuptools left out) and the installed distribution names."""
    venv.create(home, with_pip=True)
    python = str(home / "bin" / "python")
    target = f"{wheel}[{extras}]" if extras else str(wheel)
    subprocess.run([python, "-m", "pip", "install", "--quiet", "-c", str(LOCK), target, *more], check=True)
    frozen = subprocess.run([python, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True,
                            check=True).stdout
    names = {line.split("==")[0].lower().replace("_", "-") for line in frozen.splitlines()} - {"pip", "setuptools"}
    [site] = list(home.glob("lib/python3*/site-packages"))
    size = sum(f.stat().st_size for f in site.rglob("*") if f.is_file()
               and not f.relative_to(site).parts[0].startswith(("pip", "setuptools", "_distutils_hack")))
    return size, names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the base install and the API image only")
    args = parser.parse_args()
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        wheel = build_wheel(Path(tmp) / "dist")
        print(f"{'install':<14} {'MB':>8} {'packages':>9}  heavy packages present")
        for name, (extras, more, allowed) in INSTALLS.items():
            if args.quick and name not in QUICK:
                continue
            size, names = measure(wheel, extras, more, Path(tmp) / name.replace(" ", "-"))
            heavy = sorted(names & HEAVY)
            unexpected = sorted(set(heavy) - allowed)
            results[name] = {"mb": round(size / 1e6, 1), "packages": len(names), "heavy": heavy,
                             "unexpected": unexpected}
            flag = f"  UNEXPECTED: {', '.join(unexpected)}" if unexpected else ""
            print(f"{name:<14} {size / 1e6:>8.1f} {len(names):>9}  {', '.join(heavy) or '-'}{flag}")
    print(json.dumps({name.replace(" ", "_") + "_mb": r["mb"] for name, r in results.items()}
                     | {"unexpected": sorted({p for r in results.values() for p in r["unexpected"]})}))  # type: ignore[misc]


if __name__ == "__main__":
    main()
