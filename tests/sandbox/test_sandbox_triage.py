"""The sandbox's write side over real HTTP: triage as another TestIO user (admin route and Python
handle), faults that apply a write and then lose its answer, rules that match writes only, and
the request log counting writes per bug."""

from __future__ import annotations

import httpx
import pytest

from testio_mirror.sandbox import FaultRule, SandboxServer, UnprocessableError
from tests.helpers.polling import wait_for
from tests.helpers.sandbox_http import ok, sandbox_client


def forwarded(sandbox: SandboxServer) -> list[int]:
    bugs = sandbox.world.snapshot()["bugs"]
    return [int(i) for i, b in bugs.items() if b["status"] == "forwarded" and not b["known"]]


def test_admin_triage_changes_the_bug_and_logs_no_api_request(sandbox: SandboxServer) -> None:
    first, second = forwarded(sandbox)[:2]
    with sandbox_client(sandbox, admin=True) as admin:
        body = {"action": "reject", "reason": "not_reproducible", "comment": "by a person"}
        changed = ok(admin.post(f"bugs/{first}/triage", json=body), "bug")
        marked = ok(admin.post(f"bugs/{second}/triage", json={"action": "mark_known"}), "bug")
        assert admin.post("bugs/999999/triage", json={"action": "accept"}).status_code == 404
        assert admin.post(f"bugs/{first}/triage", json={"action": "explode"}).status_code == 422
        bad = {"action": "reject", "reason": "no_such_reason"}
        assert admin.post(f"bugs/{second}/triage", json=bad).status_code == 422
    assert changed["status"] == sandbox.world.bug(first)["status"] == "rejected"
    assert sandbox.world.bug(first)["comments"][-1]["body"].endswith("by a person")
    assert marked["known"] is sandbox.world.bug(second)["known"] is True
    assert sandbox.requests.records() == []


def test_the_handle_triages_as_a_person(sandbox: SandboxServer) -> None:
    bug_id = forwarded(sandbox)[0]
    assert sandbox.triage_as_person(bug_id, "accept")["status"] == "accepted"
    assert sandbox.triage_as_person(bug_id, "mark_as_exported")["exported_at"] is not None
    with pytest.raises(UnprocessableError):
        sandbox.triage_as_person(bug_id, "approve")
    assert sandbox.requests.records() == []


def test_accept_after_reject_is_applied(sandbox: SandboxServer, api: httpx.Client) -> None:
    """The documented assumption: a decided bug takes the other decision."""
    bug_id = forwarded(sandbox)[0]
    sandbox.triage_as_person(bug_id, "reject", reason="duplicate")
    assert ok(api.put(f"bugs/{bug_id}/accept"), "bug")["status"] == "accepted"


@pytest.mark.parametrize(
    ("kind", "status"),
    [("apply_then_error", 503), ("apply_then_disconnect", 0), ("apply_then_hang", 0)],
)
def test_an_applying_fault_changes_the_bug_and_loses_the_answer(
    sandbox: SandboxServer, kind: str, status: int
) -> None:
    bug_id = forwarded(sandbox)[0]
    sandbox.faults.add(
        FaultRule(kind=kind, method="PUT", path="bugs/*/accept", status=503, hang_seconds=30)  # type: ignore[arg-type]
    )
    with httpx.Client(
        base_url=sandbox.base_url + "/", headers=sandbox.auth_headers, timeout=1.0
    ) as api:
        if status:
            assert api.put(f"bugs/{bug_id}/accept").status_code == status
        else:
            with pytest.raises(httpx.HTTPError):
                api.put(f"bugs/{bug_id}/accept")
    assert sandbox.world.bug(bug_id)["status"] == "accepted"
    # A held answer is logged once the sandbox sees the client hang up.
    assert wait_for(lambda: len(sandbox.requests.writes(bug_id)) == 1)
    assert len(sandbox.requests.writes(bug_id)) == 1


def test_a_hold_shorter_than_the_client_waits_still_answers(
    sandbox: SandboxServer, api: httpx.Client
) -> None:
    bug_id = forwarded(sandbox)[0]
    sandbox.faults.add(FaultRule(kind="apply_then_hang", method="PUT", hang_seconds=0.1))
    assert ok(api.put(f"bugs/{bug_id}/mark_as_known"), "bug")["known"] is True


@pytest.mark.parametrize("kind", ["error", "rate_limit", "disconnect"])
def test_a_plain_fault_on_a_write_applies_nothing(
    sandbox: SandboxServer, api: httpx.Client, kind: str
) -> None:
    bug_id = forwarded(sandbox)[0]
    sandbox.faults.add(FaultRule(kind=kind, method="PUT", path="bugs/*/*", status=503))  # type: ignore[arg-type]
    try:
        assert api.put(f"bugs/{bug_id}/accept").status_code >= 400
    except httpx.HTTPError:
        assert kind == "disconnect"
    assert sandbox.world.bug(bug_id)["status"] == "forwarded"


def test_a_write_rule_leaves_reads_alone(sandbox: SandboxServer, api: httpx.Client) -> None:
    bug_id = forwarded(sandbox)[0]
    sandbox.faults.add(FaultRule(kind="error", method="PUT", path="bugs/*/*", times=None))
    assert api.get(f"bugs/{bug_id}").status_code == 200
    assert api.get("bugs/reject_reasons").status_code == 200
    assert api.put(f"bugs/{bug_id}/accept").status_code == 500


def test_the_request_log_counts_writes_per_bug(sandbox: SandboxServer, api: httpx.Client) -> None:
    first, second = forwarded(sandbox)[:2]
    api.get(f"bugs/{first}")
    api.put(f"bugs/{first}/accept")
    api.put(f"bugs/{first}/mark_as_known")
    api.put(f"bugs/{second}/reject", json={"reason": "duplicate"})
    assert [(r.method, r.path) for r in sandbox.requests.writes(first)] == [
        ("PUT", f"bugs/{first}/accept"),
        ("PUT", f"bugs/{first}/mark_as_known"),
    ]
    assert len(sandbox.requests.writes()) == 3
    with sandbox_client(sandbox, admin=True) as admin:
        logged = ok(admin.get("requests"), "requests")
    assert sum(1 for r in logged if r["method"] == "PUT") == 3
