"""Talking to a running sandbox over HTTP as the sandbox tests do: clients of its API and admin
API, answers that must be 200, a product's listing, its request log."""

from __future__ import annotations

from typing import Any

import httpx

from testio_mirror.sandbox import API_PREFIX, RequestRecord, SandboxServer
from tests.helpers.polling import wait_for


def sandbox_client(server: SandboxServer, admin: bool = False) -> httpx.Client:
    """An authenticated client rooted at the API (or, with ``admin``, the admin API)."""
    base = server.base_url
    if admin:
        base = base.removesuffix(API_PREFIX) + "/_sandbox"
    return httpx.Client(base_url=base + "/", headers=server.auth_headers, timeout=10.0)


def ok(response: httpx.Response, key: str) -> Any:
    """``key`` of a 200 answer's JSON."""
    assert response.status_code == 200, response.text
    return response.json()[key]


def listing(api: httpx.Client, product_id: int, page: int = 1, per_page: int = 25) -> list[int]:
    """The test ids of one page of a product's listing."""
    params = {"page": page, "per_page": per_page}
    tests = ok(
        api.get(f"products/{product_id}/exploratory_tests", params=params), "exploratory_tests"
    )
    return [t["id"] for t in tests]


def last_record(sandbox: SandboxServer) -> RequestRecord:
    """The newest entry of the request log, once there is one."""
    assert wait_for(lambda: len(sandbox.requests) > 0)
    return sandbox.requests.records()[-1]


def assert_still_serving(api: httpx.Client) -> None:
    """The small sandbox answers its products as usual."""
    response = api.get("products")
    assert response.status_code == 200
    assert len(response.json()["products"]) == 3
