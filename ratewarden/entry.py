"""The ``ratewarden`` console script: ``--version`` and the missing-extra hints work without the ``[cli]`` extra."""

from __future__ import annotations

import sys

from . import __version__
from .extras import MissingExtra, require


def main(argv: list[str] | None = None) -> None:
    """Run the command line; a feature whose extra is missing exits 1 with the ``pip install`` to run."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] in (["--version"], ["-V"]):
        print(f"ratewarden {__version__}")
        return
    try:
        require("cli", "typer", "rich", feature="the ratewarden command")
        from .cli import app

        app(args=args, prog_name="ratewarden")
    except MissingExtra as exc:
        print(f"ratewarden: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
