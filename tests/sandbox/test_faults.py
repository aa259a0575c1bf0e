"""Fault rules over real HTTP: which requests they hit, how often and in what order, what
the request log says of them, and the values a rule refuses."""

from __future__ import annotations

import contextlib
from typing import Any

import httpx
import pytest

from testio_mirror.sandbox import FaultRule, SandboxServer
from testio_mirror.sandbox.faults import EchoForm, FaultKind
from tests.helpers.polling import wait_for
from tests.helpers.sandbox_http import assert_still_serving, last_record


def test_rate_limit_times_two_fires_exactly_twice(
    sandbox: SandboxServer, api: httpx.Client
) -> None:
    rule = sandbox.faults.add(FaultRule(kind="rate_limit", path="products", times=2))
    statuses = [api.get("products").status_code for _ in range(3)]
    assert statuses == [429, 429, 200]
    assert rule.fired == 2
    assert rule.exhausted


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
    record = last_record(sandbox)
    assert (record.method, record.path, record.query) == ("GET", "products", "x=1")
    assert (record.fault, record.status) == (kind, sent)
    assert_still_serving(api)
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
    assert_still_serving(api)


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
        ({"kind": "trickle", "trickle_bytes": 0}, "trickle_bytes"),
        ({"kind": "trickle", "trickle_interval": -1}, "trickle_interval"),
        ({"kind": "echo_secret", "echo_form": "rot13"}, "unknown echo_form"),
    ],
)
def test_fault_rule_rejects_bad_values(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultRule(**changes)


@pytest.mark.parametrize(
    ("form", "echoed"),
    [
        ("plain", "abcdefghijklmnopQ1"),
        ("base64", "YWJjZGVmZ2hpamtsbW5vcFEx"),
        ("suffix", "ghijklmnopQ1"),
        ("upper", "ABCDEFGHIJKLMNOPQ1"),
        ("lower", "abcdefghijklmnopq1"),
        ("reversed", "1Qponmlkjihgfedcba"),
    ],
)
def test_echo_secret_alters_the_secret_as_its_form_says(form: EchoForm, echoed: str) -> None:
    presented = FaultRule(kind="echo_secret", echo_form=form)
    assert presented.echoed("abcdefghijklmnopQ1") == echoed
    given = FaultRule(kind="echo_secret", echo_form=form, echo_text="abcdefghijklmnopQ1")
    assert given.echoed("the request's token") == echoed
