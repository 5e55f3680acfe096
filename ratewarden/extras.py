"""Optional extras: which one provides a feature, and the one-line hint when it is missing."""

from __future__ import annotations

import importlib.util


class MissingExtra(ImportError):
    """A feature needs modules of an extra that is not installed; the message says what to install."""

    def __init__(self, extra: str, feature: str, modules: list[str]) -> None:
        super().__init__(f"{feature} needs {', '.join(modules)}: pip install 'ratewarden[{extra}]'")
        self.extra = extra


def missing_modules(*modules: str) -> list[str]:
    """The named top-level modules that cannot be imported here."""
    return [module for module in modules if importlib.util.find_spec(module) is None]


def require(extra: str, *modules: str, feature: str) -> None:
    """Raise :class:`MissingExtra` naming ``pip install 'ratewarden[extra]'`` unless every module is importable."""
    missing = missing_modules(*modules)
    if missing:
        raise MissingExtra(extra, feature, missing)
