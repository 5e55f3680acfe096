"""The README's integration snippets run as written, in an app of their framework, and the
line counts its table states are theirs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

README = Path(__file__).resolve().parent.parent / "README.md"
POLICY = {"tiers": {"anonymous": {"rules": ["5/hour"]}, "free": {}}}


def snippets() -> dict[str, str]:
    text = README.read_text()
    return dict(re.findall(r"<!-- integration: (\w+) -->\n```python\n(.*?)```", text, re.DOTALL))


def stated_lines() -> dict[str, int]:
    rows = re.findall(r"^\| (FastAPI|Starlette|Litestar|Flask) \| (\d+) \|", README.read_text(), re.MULTILINE)
    return {name.lower(): int(count) for name, count in rows}


def _fastapi() -> dict[str, Any]:
    from fastapi import FastAPI

    app = FastAPI()
    app.get("/items/{item_id}")(lambda item_id: {"id": item_id})
    return {"app": app}


def _starlette() -> dict[str, Any]:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    return {"Starlette": Starlette, "routes": [Route("/items/{item_id}", lambda request: JSONResponse({}))]}


def _litestar() -> dict[str, Any]:
    from litestar import Litestar, get

    @get("/items/{item_id:int}", sync_to_thread=False)
    def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    return {"Litestar": Litestar, "route_handlers": [item]}


def _flask() -> dict[str, Any]:
    from flask import Flask

    app = Flask(__name__)
    app.get("/items/<int:item_id>")(lambda item_id: {"id": item_id})
    return {"app": app}


PRELUDES = {"fastapi": _fastapi, "starlette": _starlette, "litestar": _litestar, "flask": _flask}


def test_every_framework_has_a_snippet_and_its_stated_line_count() -> None:
    found = snippets()
    assert sorted(found) == sorted(PRELUDES)
    assert stated_lines() == {name: sum(1 for line in code.splitlines() if line.strip())
                              for name, code in found.items()}


@pytest.mark.parametrize("framework", sorted(PRELUDES))
def test_the_snippet_limits_an_app(framework: str, redis_sync: redis.Redis, redis_url: str, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(POLICY))
    monkeypatch.setenv("RATEWARDEN_POLICY_FILE", str(policy_file))
    monkeypatch.setenv("RATEWARDEN_REDIS_URL", redis_url)
    monkeypatch.setenv("RATEWARDEN_GC_FREEZE", "false")
    namespace = PRELUDES[framework]()
    exec(snippets()[framework], namespace)  # the README's own code
    app = namespace["app"]
    if framework == "flask":
        client = app.test_client()
        responses = [client.get("/items/3") for _ in range(6)]
        for response in responses:
            response.close()
        app.wsgi_app.enforcer.close()
    else:
        from starlette.testclient import TestClient

        with TestClient(app) as http:
            responses = [http.get("/items/3") for _ in range(6)]
    assert [r.status_code for r in responses] == [200] * 5 + [429]
    assert responses[0].headers["RateLimit-Policy"] == '"5-per-1h";q=5;w=3600'
    assert responses[5].headers["Content-Type"] == "application/problem+json"
