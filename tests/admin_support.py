"""Shared by the admin API's tests: a property-based run that looks for 500s."""

from __future__ import annotations

from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings


def server_errors(client: TestClient, schema: Any, headers: dict[str, str],
                  max_examples: int) -> tuple[list[str], set[str]]:
    """Requests generated from ``schema`` (a schemathesis OpenAPI schema) sent through ``client``:
    those answered 5xx, and every operation reached."""
    failures: list[str] = []
    seen: set[str] = set()

    @settings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=schema.as_strategy())
    def check(case: Any) -> None:
        # the call goes through the app's own test client (httpx), not schemathesis' requests session
        body = None if case.body is schemathesis.core.NOT_SET else case.body
        response = client.request(case.method, case.formatted_path, params=case.query or None,
                                  json=body, headers={**(case.headers or {}), **headers})
        seen.add(f"{case.method} {case.path}")
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path} {case.query} {body} -> {response.status_code}: "
                            f"{response.text[:200]}")

    check()
    return failures, seen
