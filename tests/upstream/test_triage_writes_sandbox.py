"""``send_triage`` against the sandbox over real HTTP: each outcome class, the bug in the sandbox
changed or not, one PUT per call, and no outcome carrying upstream text or the token."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from testio_mirror.sandbox import FaultRule, SandboxServer
from testio_mirror.triage import TRIAGE_ACTIONS, TriageAction, TriageState
from testio_mirror.upstream.errors import BugNotFoundError
from testio_mirror.upstream.triage_writes import (
    TriageApplied,
    TriageNotApplied,
    TriageRefused,
    TriageUnknown,
)
from tests.helpers.polling import wait_for
from tests.helpers.secret_scan import altered_fragments, leaks_of
from tests.upstream.test_client_sandbox import connect

REASON = "not_reproducible"


def fresh_bugs(sandbox: SandboxServer, count: int) -> list[int]:
    """Forwarded bugs that carry no triage yet."""
    bugs = sandbox.world.snapshot()["bugs"]
    fresh = [
        int(i)
        for i, b in bugs.items()
        if b["status"] == "forwarded"
        and not b["known"]
        and not b.get("fixed_at")
        and not b["exported_at"]
    ]
    assert len(fresh) >= count
    return fresh[:count]


def state(sandbox: SandboxServer, bug_id: int) -> TriageState:
    return TriageState.of_bug(sandbox.world.bug(bug_id))


def arguments(action: TriageAction) -> dict[str, Any]:
    return {"reason": REASON, "comment": "Seen once."} if action == "reject" else {}


async def test_each_action_is_applied_once_and_changes_the_bug(sandbox: SandboxServer) -> None:
    targets = dict(zip(TRIAGE_ACTIONS, fresh_bugs(sandbox, 5), strict=True))
    async with connect(sandbox) as client:
        outcomes = {
            action: await client.send_triage(bug_id, action, **arguments(action))
            for action, bug_id in targets.items()
        }
        assert client.metrics.writes == 5
    for action, bug_id in targets.items():
        outcome = outcomes[action]
        assert isinstance(outcome, TriageApplied), outcome
        assert outcome.bug.id == bug_id
        assert outcome.bug.raw == sandbox.world.bug(bug_id)  # the raw JSON, for the store
        assert TriageState.of_bug(outcome.bug.raw).shows(action)
        assert state(sandbox, bug_id).shows(action)
        assert len(sandbox.requests.writes(bug_id)) == 1
    comment = sandbox.world.bug(targets["reject"])["comments"][-1]["body"]
    assert comment.endswith("Seen once.")


async def test_unknown_reason_is_refused_and_changes_nothing(sandbox: SandboxServer) -> None:
    (bug_id,) = fresh_bugs(sandbox, 1)
    before = sandbox.world.bug(bug_id)
    async with connect(sandbox) as client:
        outcome = await client.send_triage(bug_id, "reject", reason="no_such_reason")
    assert isinstance(outcome, TriageRefused)
    assert (outcome.cause, outcome.status) == ("invalid", 422)
    assert "reject reason is unknown" in outcome.reason
    assert "must be one of" not in outcome.reason  # the sandbox's text stays out
    assert sandbox.world.bug(bug_id) == before


async def test_reject_without_a_reason_sends_nothing(sandbox: SandboxServer) -> None:
    (bug_id,) = fresh_bugs(sandbox, 1)
    async with connect(sandbox) as client:
        outcome = await client.send_triage(bug_id, "reject")
    assert isinstance(outcome, TriageRefused)
    assert "nothing was sent" in outcome.reason
    assert sandbox.requests.writes() == []


async def test_an_unknown_bug_is_refused_and_read_as_not_found(sandbox: SandboxServer) -> None:
    async with connect(sandbox) as client:
        outcome = await client.send_triage(999999, "accept")
        with pytest.raises(BugNotFoundError) as info:
            await client.bug(999999)
    assert isinstance(outcome, TriageRefused)
    assert (outcome.cause, outcome.status) == ("not_found", 404)
    assert info.value.bug_id == 999999
    assert "bug 999999 is not in TestIO" in str(info.value)


@pytest.mark.parametrize(
    "rule",
    [
        FaultRule(kind="apply_then_hang", method="PUT", path="bugs/*/accept", hang_seconds=30),
        FaultRule(kind="apply_then_error", method="PUT", path="bugs/*/accept", status=503),
        FaultRule(kind="apply_then_disconnect", method="PUT", path="bugs/*/accept"),
    ],
    ids=["then-time-out", "then-503", "then-drop"],
)
async def test_a_lost_answer_is_unknown_and_the_bug_did_change(
    sandbox: SandboxServer, rule: FaultRule
) -> None:
    (bug_id,) = fresh_bugs(sandbox, 1)
    sandbox.faults.add(rule)
    async with connect(sandbox, http_timeout_seconds=1.0) as client:
        outcome = await client.send_triage(bug_id, "accept")
        assert isinstance(outcome, TriageUnknown), outcome
        assert "read the bug before sending it again" in outcome.reason
        assert client.metrics.writes_unanswered == 1
        # How the caller settles it: read the bug, compare.
        assert TriageState.of_bug((await client.bug(bug_id)).raw).shows("accept")
    assert state(sandbox, bug_id).shows("accept")
    # A held answer is logged once the sandbox sees the client hang up.
    assert wait_for(lambda: len(sandbox.requests.writes(bug_id)) == 1)
    assert len(sandbox.requests.writes(bug_id)) == 1  # sent once, never retried


@pytest.mark.parametrize(
    "rule",
    [
        FaultRule(kind="error", method="PUT", path="bugs/*/*", status=503),
        FaultRule(kind="error", method="PUT", path="bugs/*/*", status=500),
        FaultRule(kind="disconnect", method="PUT", path="bugs/*/*"),
    ],
    ids=["503", "500", "drop"],
)
async def test_a_failure_before_applying_is_still_unknown_to_the_client(
    sandbox: SandboxServer, rule: FaultRule
) -> None:
    """The sandbox did not apply it, but nothing on the wire proves that: unknown, and the read
    shows it was not applied."""
    (bug_id,) = fresh_bugs(sandbox, 1)
    sandbox.faults.add(rule)
    async with connect(sandbox) as client:
        outcome = await client.send_triage(bug_id, "mark_known")
        assert isinstance(outcome, TriageUnknown)
        assert not TriageState.of_bug((await client.bug(bug_id)).raw).shows("mark_known")
    assert len(sandbox.requests.writes(bug_id)) == 1


async def test_429_is_not_applied_and_pauses_the_next_request(sandbox: SandboxServer) -> None:
    (bug_id,) = fresh_bugs(sandbox, 1)
    sandbox.faults.add(FaultRule(kind="rate_limit", method="PUT", path="bugs/*/*", retry_after="1"))
    async with connect(sandbox, retry_max_delay_seconds=0.2) as client:
        outcome = await client.send_triage(bug_id, "accept")
        assert isinstance(outcome, TriageNotApplied)
        assert (outcome.status, outcome.retry_after) == (429, 0.2)
        assert client.metrics.rate_limit_wait_seconds == 0
        await client.bug(bug_id)  # waits the pause out first
        assert client.metrics.rate_limit_wait_seconds > 0
        again = await client.send_triage(bug_id, "accept")
    assert isinstance(again, TriageApplied)
    assert len(sandbox.requests.writes(bug_id)) == 2


async def test_a_refused_connection_is_not_applied(sandbox: SandboxServer) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    closed = f"http://127.0.0.1:{port}/customer/v2"
    async with connect(sandbox, base_url=closed) as client:
        outcome = await client.send_triage(1, "accept")
    assert isinstance(outcome, TriageNotApplied)
    assert "before sending; not applied" in outcome.reason


@pytest.mark.parametrize("form", ["plain", "base64", "suffix", "upper", "lower", "reversed"])
@pytest.mark.parametrize("status", [401, 422, 503, 429, 200])
async def test_no_outcome_carries_the_echoed_token(
    sandbox: SandboxServer, form: str, status: int
) -> None:
    (bug_id,) = fresh_bugs(sandbox, 1)
    sandbox.faults.add(
        FaultRule(kind="echo_secret", method="PUT", path="bugs/*/*", status=status, echo_form=form)
    )
    async with connect(sandbox) as client:
        outcome = await client.send_triage(bug_id, "reject", reason=REASON, comment="c")
    assert not isinstance(outcome, TriageApplied)
    assert leaks_of(outcome.reason, altered_fragments(sandbox.token)) == []
    assert leaks_of(repr(outcome), altered_fragments(sandbox.token)) == []
    assert "invalid token" not in outcome.reason
