"""The sandbox's admin API over real HTTP: faults, runtime knobs, health, the request log,
evolve steps and the snapshot, all behind the token."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import httpx
import pytest

from testio_mirror.sandbox import API_PREFIX, SandboxKnobs, SandboxServer
from tests.helpers.polling import wait_for
from tests.helpers.sandbox_http import assert_still_serving, last_record, ok, sandbox_client


@pytest.fixture
def admin(sandbox: SandboxServer) -> Iterator[httpx.Client]:
    """An authenticated client rooted at the sandbox's admin API."""
    root = sandbox.base_url.removesuffix(API_PREFIX)
    with httpx.Client(
        base_url=f"{root}/_sandbox/", headers=sandbox.auth_headers, timeout=10.0
    ) as client:
        yield client


def test_admin_adds_lists_and_clears_faults(admin: httpx.Client, api: httpx.Client) -> None:
    rule = {"kind": "error", "path": "products", "status": 503, "times": 2}
    added = admin.post("faults", json=rule)
    assert added.status_code == 200
    assert rule.items() <= added.json()["faults"][0].items()
    assert added.json()["faults"][0]["fired"] == 0
    assert api.get("products").status_code == 503
    listed = admin.get("faults").json()["faults"]
    assert len(listed) == 1
    assert listed[0]["fired"] == 1
    assert admin.delete("faults").json() == {"faults": []}
    assert admin.get("faults").json() == {"faults": []}
    assert_still_serving(api)


def test_admin_rejects_a_bad_rule(admin: httpx.Client) -> None:
    bad_rules: list[dict[str, Any]] = [
        {"kind": "explode"},
        {"kind": "error", "colour": "red"},
        {"kind": "error", "times": 0},
        {"kind": "error", "status": "503"},
    ]
    for body in bad_rules:
        response = admin.post("faults", json=body)
        assert response.status_code == 422, body
        assert "error" in response.json()
    assert admin.get("faults").json() == {"faults": []}


def test_admin_rule_with_retry_after_as_a_number(admin: httpx.Client, api: httpx.Client) -> None:
    # JSON has numbers: a rule either refuses them up front or sends them as seconds.
    added = admin.post("faults", json={"kind": "rate_limit", "retry_after": 2})
    if added.status_code != 422:
        response = api.get("products")
        assert response.status_code == 429
        assert response.headers["retry-after"] == "2"
    assert_still_serving(api)


def test_admin_requires_the_token(sandbox: SandboxServer, admin: httpx.Client) -> None:
    with httpx.Client(base_url=admin.base_url) as anonymous:
        for path in ("health", "faults", "config", "requests", "snapshot"):
            assert anonymous.get(path).status_code == 401, path
        assert anonymous.post("evolve").status_code == 401
        assert anonymous.delete("faults").status_code == 401
        for wrong in ("Token wrong", sandbox.token, f"Bearer {sandbox.token}"):
            assert anonymous.get("health", headers={"Authorization": wrong}).status_code == 401
    assert sandbox.world.counts()["evolve_steps"] == 0
    assert admin.get("health").status_code == 200


def test_admin_config_latency(
    sandbox: SandboxServer, admin: httpx.Client, api: httpx.Client
) -> None:
    config = admin.put("config", json={"latency_ms": 120})
    assert config.status_code == 200
    assert config.json()["config"]["latency_ms"] == 120
    assert sandbox.knobs.latency_ms == 120
    assert api.get("products").status_code == 200
    assert last_record(sandbox).ms >= 120
    config = admin.get("config").json()["config"]
    assert config == asdict(SandboxKnobs(latency_ms=120)) == asdict(sandbox.knobs)


def test_admin_config_rejects_bad_knobs(admin: httpx.Client) -> None:
    before = admin.get("config").json()
    bad_changes: list[dict[str, Any]] = [
        {"speed": 3},
        {"latency_ms": -1},
        {"latency_ms": "fast"},
        {"ignore_paging": 1},
        {"max_per_page": 0},
    ]
    for body in bad_changes:
        response = admin.put("config", json=body)
        assert response.status_code == 422, body
        assert "error" in response.json()
    assert admin.get("config").json() == before


def test_admin_config_rejected_update_changes_nothing(admin: httpx.Client) -> None:
    before = admin.get("config").json()
    response = admin.put("config", json={"latency_ms": 250, "speed": 3})
    assert response.status_code == 422
    assert admin.get("config").json() == before  # a refused update must not half-apply


def test_admin_health_and_request_log(
    sandbox: SandboxServer, admin: httpx.Client, api: httpx.Client
) -> None:
    health = admin.get("health")
    assert health.json() == {"status": "ok", "counts": sandbox.world.counts()}
    assert health.json()["counts"]["tests"] == 90
    api.get("products")
    api.get("products/101", params={"a": "b"})
    admin.get("faults")
    assert wait_for(lambda: len(sandbox.requests) == 2)
    logged = admin.get("requests").json()["requests"]
    assert [(r["method"], r["path"], r["query"], r["status"]) for r in logged] == [
        ("GET", "products", "", 200),
        ("GET", "products/101", "a=b", 200),
    ]
    assert set(logged[0]) == {"method", "path", "query", "status", "ms", "fault", "at"}
    assert admin.delete("requests").json() == {"requests": []}
    assert len(sandbox.requests) == 0
    assert admin.get("requests").json() == {"requests": []}  # admin calls are never logged


def test_admin_evolve(sandbox: SandboxServer) -> None:
    with sandbox_client(sandbox, admin=True) as admin:
        evolved = ok(admin.post("evolve", params={"steps": 2}), "evolved")
        assert sandbox.world.counts()["evolve_steps"] == 2
        assert evolved["steps"] == 2
        assert set(evolved) == {
            "steps",
            "added_tests",
            "status_changes",
            "moved_tests",
            "new_bugs",
            "triaged_bugs",
            "removed_tests",
        }
        assert len(evolved["removed_tests"]) == 2
        for change in evolved["status_changes"]:
            assert set(change) == {"test_id", "from", "to"}
        assert ok(admin.post("evolve"), "evolved")["steps"] == 1
        assert sandbox.world.counts()["evolve_steps"] == 3
        assert admin.post("evolve", params={"steps": 0}).status_code == 422
        assert sandbox.world.counts()["evolve_steps"] == 3
    assert len(sandbox.requests) == 0


def test_admin_snapshot_matches_the_world(sandbox: SandboxServer) -> None:
    sandbox.world.evolve()
    with sandbox_client(sandbox, admin=True) as admin:
        served = ok(admin.get("snapshot"), "snapshot")
    truth = sandbox.world.snapshot()
    counts = sandbox.world.counts()
    assert {"products", "tests", "bugs"} <= served.keys()
    for key in ("products", "tests", "bugs"):
        assert set(served[key]) == {str(k) for k in truth[key]}
        assert len(served[key]) == counts[key]
    assert served["tests"] == {str(k): v for k, v in truth["tests"].items()}
    assert served["product_tests"] == {str(k): v for k, v in truth["product_tests"].items()}
    sample = next(iter(truth["bugs"].values()))
    assert served["bugs"][str(sample["id"])] == sample
