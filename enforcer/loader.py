"""Load a policy from YAML, TOML or a mapping, with errors that name the file and the field."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .policy import Policy

__all__ = ["PolicyError", "load_policy", "policy_from_mapping"]


class PolicyError(ValueError):
    """A policy could not be read or is invalid. ``problems`` lists (field path, message)."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: invalid policy ({len(problems)} problem{'s' * (len(problems) != 1)})"]
        lines += [f"  {path or '(top level)'}: {message}" for path, message in problems]
        super().__init__("\n".join(lines))


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith("function-") or part in ("str", "int", "float"):
            continue  # pydantic's internal validator names, not user fields
        else:
            path += f".{part}" if path else part
    return path


def policy_from_mapping(data: Any, source: str = "<policy>") -> Policy:
    """Validate a mapping (as parsed from a file) into a :class:`Policy`."""
    if not isinstance(data, Mapping):
        raise PolicyError(source, [("", f"expected a mapping at the top level, got {type(data).__name__}")])
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            message = error["msg"].removeprefix("Value error, ")
            problems.append((_field_path(error["loc"]), message))
        raise PolicyError(source, problems) from None


def load_policy(path: str | Path) -> Policy:
    """Read and validate a ``.yaml``/``.yml`` or ``.toml`` policy file."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(source, [("", f"cannot read file: {exc}")]) from None
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            raise PolicyError(source, [("", "unknown file type: use .yaml, .yml or .toml")])
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(source, [("", f"not valid {path.suffix.lstrip('.').upper()}: {exc}")]) from None
    return policy_from_mapping(data, source)
