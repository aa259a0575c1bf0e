"""Fault injection, the request log and the admin API of the sandbox, over real HTTP."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import httpx
import pytest

from testio_mirror.sandbox import API_PREFIX, FaultRule, RequestRecord, SandboxKnobs, SandboxServer
from testio_mirror.sandbox.faults import FaultKind
from tests.helpers.polling import wait_for


@pytest.fixture
def admin(sandbox: SandboxServer) -> Iterator[httpx.Client]:
    """An authenticated client rooted at the sandbox's admin API."""
    root = sandbox.base_url.removesuffix(API_PREFIX)
    with httpx.Client(
        base_url=f"{root}/_sandbox/", headers=sandbox.auth_headers, timeout=10.0
    ) as client:
        yield client


def _last_record(sandbox: SandboxServer) -> RequestRecord:
    assert wait_for(lambda: len(sandbox.requests) > 0)
    return sandbox.requests.records()[-1]


def _assert_still_serving(api: httpx.Client) -> None:
    response = api.get("products")
    assert response.status_code == 200
    assert len(response.json()["products"]) == 3


# -- rate_limit ------------------------------------------------------------------------------


_LATER = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)


@pytest.mark.parametrize(
    "retry_after",
    ["2", format_datetime(_LATER, usegmt=True), None],
    ids=["seconds", "http-date", "absent"],
)
def test_rate_limit_retry_after(
    sandbox: SandboxServer, api: httpx.Client, retry_after: str | None
) -> None:
    sandbox.faults.add(FaultRule(kind="rate_limit", path="products", retry_after=retry_after))
    response = api.get("products")
    assert response.status_code == 429
    assert response.json() == {"error": "rate limit exceeded"}
    assert response.headers.get("retry-after") == retry_after
    if retry_after is not None and not retry_after.isdigit():
        assert parsedate_to_datetime(response.headers["retry-after"]) == _LATER
    _assert_still_serving(api)


def test_rate_limit_times_two_fires_exactly_twice(
    sandbox: SandboxServer, api: httpx.Client
) -> None:
    rule = sandbox.faults.add(FaultRule(kind="rate_limit", path="products", times=2))
    statuses = [api.get("products").status_code for _ in range(3)]
    assert statuses == [429, 429, 200]
    assert rule.fired == 2
    assert rule.exhausted


@pytest.mark.parametrize(
    ("status", "content_type"),
    [(500, "application/json"), (503, "application/json"), (524, "text/html")],
)
def test_error_statuses(
    sandbox: SandboxServer, api: httpx.Client, status: int, content_type: str
) -> None:
    sandbox.faults.add(FaultRule(kind="error", path="products", status=status))
    response = api.get("products")
    assert response.status_code == status
    assert response.headers["content-type"] == content_type
    if status == 524:  # what a proxy in front of the API answers: HTML, not JSON
        assert "524" in response.text
        with pytest.raises(json.JSONDecodeError):
            response.json()
    else:
        assert response.json() == {"error": f"injected {status}"}
    _assert_still_serving(api)


# -- hang, malformed, truncated, disconnect --------------------------------------------------


def test_hang_outlasts_the_client_timeout(sandbox: SandboxServer, api: httpx.Client) -> None:
    sandbox.faults.add(FaultRule(kind="hang", path="products", hang_seconds=2))
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        api.get("products", timeout=0.3)
    assert time.monotonic() - started < 1.5
    _assert_still_serving(api)  # the hung request does not block others


def test_hang_the_client_gave_up_on_is_logged_without_a_status(
    sandbox: SandboxServer, api: httpx.Client
) -> None:
    # RequestRecord documents status 0 "when the connection closed before a status line": the
    # client hung up during the hang, so nothing was ever sent to it.
    sandbox.faults.add(FaultRule(kind="hang", path="products", hang_seconds=1))
    with pytest.raises(httpx.ReadTimeout):
        api.get("products", timeout=0.3)
    assert wait_for(lambda: len(sandbox.requests.records("products")) == 1)
    record = sandbox.requests.records("products")[0]
    assert record.fault == "hang"
    assert record.status == 0


def test_malformed_answers_200_with_a_body_that_is_not_json(
    sandbox: SandboxServer, api: httpx.Client
) -> None:
    sandbox.faults.add(FaultRule(kind="malformed", path="bugs"))
    response = api.get("bugs", params={"filter_product_ids": "101"})
    assert response.status_code == 200
    with pytest.raises(ValueError, match="Unterminated string"):
        response.json()
    _assert_still_serving(api)


@pytest.mark.parametrize("kind", ["truncated", "disconnect"])
def test_broken_bodies_raise_a_transport_error(
    sandbox: SandboxServer, api: httpx.Client, kind: FaultKind
) -> None:
    sandbox.faults.add(FaultRule(kind=kind, path="products"))
    with pytest.raises(httpx.TransportError) as caught:
        api.get("products")
    assert type(caught.value) is httpx.RemoteProtocolError
    assert "peer closed connection" in str(caught.value)
    _assert_still_serving(api)


@pytest.mark.parametrize(
    ("kind", "status", "sent"),
    [
        ("rate_limit", 500, 429),
        ("error", 502, 502),
        ("malformed", 500, 200),
        ("truncated", 500, 200),
        # the disconnect sends a 200 status line promising 64 bytes, then drops the connection
        ("disconnect", 500, 200),
    ],
)
def test_the_request_log_marks_faults_with_kind_and_status(
    sandbox: SandboxServer, api: httpx.Client, kind: FaultKind, status: int, sent: int
) -> None:
    sandbox.faults.add(FaultRule(kind=kind, path="products", status=status))
    with contextlib.suppress(httpx.TransportError):
        api.get("products", params={"x": "1"})
    record = _last_record(sandbox)
    assert (record.method, record.path, record.query) == ("GET", "products", "x=1")
    assert (record.fault, record.status) == (kind, sent)
    _assert_still_serving(api)
    assert wait_for(lambda: len(sandbox.requests) == 2)
    assert sandbox.requests.records()[-1].fault is None


def test_paths_match_by_fnmatch_below_the_api_root(
    sandbox: SandboxServer, api: httpx.Client
) -> None:
    sandbox.faults.add(FaultRule(kind="error", path="bugs", status=503, times=None))
    sandbox.faults.add(
        FaultRule(kind="error", path="/products/*/exploratory_tests/", status=502, times=None)
    )
    assert api.get("bugs", params={"filter_product_ids": "101"}).status_code == 503
    assert api.get("products").status_code == 200
    assert api.get("products/101").status_code == 200
    assert api.get("products/102/exploratory_tests").status_code == 502
    assert api.get("products/103/exploratory_tests/").status_code == 502
    test_id = sandbox.world.tests_page(101, 1, 1)[0]["id"]
    assert api.get(f"exploratory_tests/{test_id}").status_code == 200
    bug_id = sandbox.world.bugs(test_ids=[test_id])[0]["id"]
    assert api.get(f"bugs/{bug_id}").status_code == 200  # "bugs" is not "bugs/*"


def test_method_put_only_hits_puts(sandbox: SandboxServer, api: httpx.Client) -> None:
    test_id = sandbox.world.tests_page(101, 1, 1)[0]["id"]
    bug_id = sandbox.world.bugs(test_ids=[test_id])[0]["id"]
    known = sandbox.world.bug(bug_id)["known"]
    rule = sandbox.faults.add(FaultRule(kind="error", path="bugs/*", method="put", times=None))
    assert rule.method == "PUT"
    assert api.get(f"bugs/{bug_id}").status_code == 200
    assert api.put(f"bugs/{bug_id}/accept").status_code == 500
    assert api.put(f"bugs/{bug_id}/mark_as_known").status_code == 500
    assert rule.fired == 2
    assert sandbox.world.bug(bug_id)["known"] == known  # the route never ran
    sandbox.faults.clear()
    assert api.put(f"bugs/{bug_id}/mark_as_known").json()["bug"]["known"] is True


def test_times_none_fires_until_cleared(sandbox: SandboxServer, api: httpx.Client) -> None:
    rule = sandbox.faults.add(FaultRule(kind="error", status=503, times=None))
    assert [api.get("products").status_code for _ in range(5)] == [503] * 5
    assert rule.fired == 5
    assert not rule.exhausted
    sandbox.faults.clear()
    assert sandbox.faults.rules() == []
    _assert_still_serving(api)


def test_rules_fire_in_the_order_added(sandbox: SandboxServer, api: httpx.Client) -> None:
    sandbox.faults.add(FaultRule(kind="error", path="products", status=503))
    sandbox.faults.add(FaultRule(kind="rate_limit", path="*", times=2))
    sandbox.faults.add(FaultRule(kind="error", path="products", status=500))
    statuses = [api.get("products").status_code for _ in range(5)]
    assert statuses == [503, 429, 429, 500, 200]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": "explode"}, "unknown fault kind"),
        ({"kind": "error", "times": 0}, "times must be"),
        ({"kind": "error", "status": 99}, "status must be"),
        ({"kind": "error", "status": 600}, "status must be"),
        ({"kind": "hang", "hang_seconds": -1}, "hang_seconds"),
    ],
)
def test_fault_rule_rejects_bad_values(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultRule(**changes)


def test_faults_apply_before_auth(sandbox: SandboxServer) -> None:
    sandbox.faults.add(FaultRule(kind="rate_limit", path="products", retry_after="1"))
    with httpx.Client(base_url=sandbox.base_url + "/", timeout=10.0) as anonymous:
        first = anonymous.get("products")
        second = anonymous.get("products")
    assert first.status_code == 429
    assert first.headers["retry-after"] == "1"
    assert second.status_code == 401
    assert wait_for(lambda: len(sandbox.requests) == 2)
    assert [(r.status, r.fault) for r in sandbox.requests.records()] == [
        (429, "rate_limit"),
        (401, None),
    ]


def test_truncated_cuts_even_a_refusal(sandbox: SandboxServer) -> None:
    sandbox.faults.add(FaultRule(kind="truncated", path="products"))
    with (
        httpx.Client(base_url=sandbox.base_url + "/", timeout=10.0) as anonymous,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        anonymous.get("products")
    assert wait_for(lambda: len(sandbox.requests) == 1)
    assert sandbox.requests.records()[0].status == 401


# -- the admin API ---------------------------------------------------------------------------


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
    _assert_still_serving(api)


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
    _assert_still_serving(api)


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
    assert _last_record(sandbox).ms >= 120
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
