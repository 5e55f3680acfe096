"""The web console's static files (``analytics/console/``), served by the admin API itself: the
page, its style sheet, its JavaScript modules and the vendored chart library (uPlot). The files
hold no data and need no token; everything they show comes through the token-protected API.

Every answer carries a strict Content-Security-Policy (scripts, styles and fetches from this
origin only, no inline script), so data the console renders can never run as code.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

__all__ = ["CONSOLE_DIR", "console_router", "SECURITY_HEADERS"]

CONSOLE_DIR = Path(__file__).parent / "console"
_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".js": "text/javascript; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml"}
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


def _file(relative: str) -> Path:
    root = CONSOLE_DIR.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or path.suffix not in _TYPES or not path.is_file():
        raise HTTPException(404, "no such console file")
    return path


def console_router() -> APIRouter:
    """``GET /console`` (the page) and ``GET /console/{file}`` (its assets)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/console")
    def console() -> FileResponse:
        """The web console: signs in with the admin token and reads everything through the API."""
        return FileResponse(_file("index.html"), media_type=_TYPES[".html"],
                            headers={**SECURITY_HEADERS, "cache-control": "no-store"})

    @router.get("/console/{relative:path}")
    def asset(relative: str) -> FileResponse:
        path = _file(relative)
        return FileResponse(path, media_type=_TYPES[path.suffix],
                            headers={**SECURITY_HEADERS, "cache-control": "no-cache"})

    return router
