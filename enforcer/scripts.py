"""Lua scripts shipped as ``.lua`` files, run by SHA with a reload after NOSCRIPT."""

from __future__ import annotations

import hashlib
from functools import cache
from importlib.resources import files

__all__ = ["LuaScript", "script"]


class LuaScript:
    """A script's source and SHA1; callers EVALSHA and fall back to SCRIPT LOAD on NOSCRIPT."""

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def __repr__(self) -> str:
        return f"LuaScript({self.name!r}, sha={self.sha[:10]})"


@cache
def script(name: str) -> LuaScript:
    """The packaged script ``ratewarden/enforcer/lua/<name>.lua``."""
    return LuaScript(name, files(__package__).joinpath("lua", f"{name}.lua").read_text(encoding="utf-8"))
