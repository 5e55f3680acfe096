"""The console's static files as the admin API serves them: every file the page loads (its
modules' imports followed), with its type and a Content-Security-Policy that allows no inline or
foreign script; nothing outside the console's folder; and no code that parses data as HTML."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ratewarden.analytics.console_assets import CONSOLE_DIR, console_router

IMPORT = re.compile(r"""^\s*import\s[^"']*["'](\.{1,2}/[^"']+)["']""", re.M)


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    app.include_router(console_router())
    return TestClient(app)


def _referenced(page: str) -> list[str]:
    return re.findall(r'(?:src|href)="(/console/[^"]+)"', page)


def test_the_page_and_everything_it_loads_are_served_with_a_strict_policy(client: TestClient) -> None:
    page = client.get("/console")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["cache-control"] == "no-store"
    assert "<script>" not in page.text and " style=" not in page.text  # the policy would block them

    pending, seen = _referenced(page.text), set()
    assert "/console/vendor/uplot/uPlot.iife.min.js" in pending and "/console/js/app.js" in pending
    while pending:
        url = pending.pop()
        if url in seen:
            continue
        seen.add(url)
        answer = client.get(url)
        assert answer.status_code == 200, url
        assert answer.headers["content-security-policy"] == policy
        expected = {".js": "text/javascript", ".css": "text/css"}[Path(url).suffix]
        assert answer.headers["content-type"].startswith(expected), url
        if url.startswith("/console/js/"):
            base = url.rsplit("/", 1)[0]
            for relative in IMPORT.findall(answer.text):
                parts = [*base.split("/"), *relative.split("/")]
                resolved: list[str] = []
                for part in parts:
                    if part == "..":
                        resolved.pop()
                    elif part != ".":
                        resolved.append(part)
                pending.append("/".join(resolved))
    pages = {p.name for p in (CONSOLE_DIR / "js" / "pages").glob("*.js")}
    assert {f"/console/js/pages/{name}" for name in pages} <= seen  # every page module is reachable
    print(f"{len(seen)} console files loaded from the page and its imports")


@pytest.mark.parametrize("path", ["/console/../admin.py", "/console/%2e%2e/admin.py", "/console/js/../../admin.py",
                                  "/console/..%2fconsole_assets.py", "/console/vendor/uplot/README.md",
                                  "/console/vendor/uplot/LICENSE", "/console/nothing.js", "/console/js"])
def test_nothing_else_is_served(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 404, (path, answer.text[:100])
    assert "import" not in answer.text


def test_the_scripts_never_parse_data_as_html() -> None:
    """Every value reaches the page as a text node (dom.js's h()); nothing assigns HTML."""
    sinks = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function")
    scripts = sorted((CONSOLE_DIR / "js").rglob("*.js"))
    assert len(scripts) >= 10
    offenders = [f"{s.relative_to(CONSOLE_DIR)}:{n}" for s in scripts
                 for n, line in enumerate(s.read_text().splitlines(), 1) if sinks.search(line)]
    assert offenders == []


def test_the_chart_library_ships_with_its_license() -> None:
    vendor = CONSOLE_DIR / "vendor" / "uplot"
    assert "MIT License" in (vendor / "LICENSE").read_text()
    assert (vendor / "uPlot.iife.min.js").read_text().startswith("/*! https://github.com/leeoniya/uPlot (v1.6.32) */")
