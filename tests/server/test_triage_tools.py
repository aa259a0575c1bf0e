"""The triage tools through the real MCP client, against the sandbox over HTTP and a real mirror:
each action applied once and mirrored at once, a bad reason refused before any request, dry runs,
the confirmation flows (elicitation accept / decline / cancel in both protocol eras, the one-time
token), writes off, conflicts settled both ways, cancelling, and the audit in list_changes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_types import ElicitResult

from testio_mirror.sandbox import SandboxServer
from testio_mirror.sandbox.faults import FaultRule
from testio_mirror.server import build_server
from testio_mirror.settings import Settings
from testio_mirror.triage import TriageState
from tests.helpers.mcp_session import call, call_error, poll
from tests.helpers.settings import make_settings
from tests.helpers.triage_bugs import forwarded

JSON = dict[str, Any]
WRITE_TOOLS = {"triage_bugs", "resolve_conflict", "cancel_change"}


@pytest.fixture
async def synced(sandbox: SandboxServer, tmp_path: Path) -> Settings:
    """A mirror home synced (with bugs) from ``sandbox``; writes on unless a test says."""
    settings = make_settings(sandbox, tmp_path / "home", mirror_writes="on")
    async with Client(build_server(settings, initial_sync=False)) as client:
        await call(client, "sync_data", {"include_bugs": True, "direction": "down"})
    return settings


@contextlib.asynccontextmanager
async def connect(settings: Settings, **client_options: Any) -> AsyncIterator[Client]:
    async with Client(build_server(settings, initial_sync=False), **client_options) as client:
        yield client


def upstream(sandbox: SandboxServer, bug_id: int) -> TriageState:
    return TriageState.of_bug(sandbox.world.bug(bug_id))


def writes(sandbox: SandboxServer, *bug_ids: int) -> int:
    return sum(len(sandbox.requests.writes(bug_id)) for bug_id in bug_ids)


def reason_key(sandbox: SandboxServer) -> str:
    return str(sandbox.world.reject_reasons()[0]["key"])


def answering(action: str, send: bool = True) -> Any:
    """An elicitation callback answering ``action`` (the form's box ticked when ``send``); it
    keeps the messages it was shown."""
    shown: list[str] = []

    async def callback(_context: Any, params: Any) -> ElicitResult:
        shown.append(params.message)
        content = {"send": send} if action == "accept" else None
        return ElicitResult(action=action, content=content)  # type: ignore[arg-type]

    callback.shown = shown  # type: ignore[attr-defined]
    return callback


async def test_accept_reject_and_mark_known_are_applied_once_and_mirrored_at_once(
    synced: Settings, sandbox: SandboxServer
) -> None:
    accept_bug, reject_bug, known_bug = forwarded(sandbox, 3)
    changes = [
        {"bug_id": accept_bug, "action": "accept"},
        {"bug_id": reject_bug, "action": "reject", "reason": reason_key(sandbox), "comment": "no"},
        {"bug_id": known_bug, "action": "mark_known"},
    ]
    async with connect(synced) as client:
        done = await call(client, "triage_bugs", {"changes": changes})
        bugs = {
            b: (await call(client, "get_bug", {"bug_id": b}))["bug"]
            for b in (accept_bug, reject_bug, known_bug)
        }
    assert done["outcome"] == "sent"
    assert [c["state"] for c in done["changes"]] == ["applied"] * 3
    assert [c["bug_status_now"] for c in done["changes"]] == ["accepted", "rejected", "forwarded"]
    assert done["changes"][2]["bug_now"]["known"] is True
    assert upstream(sandbox, accept_bug).status == "accepted"
    assert upstream(sandbox, reject_bug).status == "rejected"
    assert upstream(sandbox, known_bug).known
    assert [writes(sandbox, b) for b in (accept_bug, reject_bug, known_bug)] == [1, 1, 1]
    # The mirror shows it at once: get_bug reads the mirror, no pull ran.
    assert bugs[accept_bug]["status"] == "accepted"
    assert bugs[reject_bug]["status"] == "rejected"
    assert bugs[known_bug]["known"] is True


async def test_an_unknown_reject_reason_is_refused_before_any_request_naming_the_valid_ones(
    synced: Settings, sandbox: SandboxServer
) -> None:
    [bug_id] = forwarded(sandbox, 1)
    async with connect(synced) as client:
        before = len(sandbox.requests.records())
        error = await call_error(
            client,
            "triage_bugs",
            {"changes": [{"bug_id": bug_id, "action": "reject", "reason": "because"}]},
        )
        missing = await call_error(
            client, "triage_bugs", {"changes": [{"bug_id": bug_id, "action": "reject"}]}
        )
        listed = await call(client, "list_changes")
        after = len(sandbox.requests.records())
    assert "'because' is not a reject reason" in error
    assert "a rejection needs a reason" in missing
    for reason in sandbox.world.reject_reasons():
        assert reason["key"] in error
    assert after == before, "nothing may be asked of TestIO for a refused change set"
    assert listed["changes"] == []
    assert upstream(sandbox, bug_id).status == "forwarded"


async def test_a_dry_run_checks_and_shows_the_plan_and_stores_nothing(
    synced: Settings, sandbox: SandboxServer
) -> None:
    [bug_id] = forwarded(sandbox, 1)
    async with connect(synced) as client:
        plan = await call(
            client,
            "triage_bugs",
            {"changes": [{"bug_id": bug_id, "action": "accept"}], "dry_run": True},
        )
        listed = await call(client, "list_changes")
    assert plan["outcome"] == "dry_run"
    assert plan["plan"][0]["bug_id"] == bug_id
    assert plan["plan"][0]["status_now"] == "forwarded"
    assert plan["plan"][0]["effect"] == f"bug {bug_id} will be accepted"
    assert listed["changes"] == []
    assert writes(sandbox, bug_id) == 0


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_elicitation_accept_sends_and_decline_or_cancel_store_nothing(
    synced: Settings, sandbox: SandboxServer, mode: str
) -> None:
    settings = synced.model_copy(update={"mirror_writes": "confirm"})
    accepted_bug, declined_bug, cancelled_bug, unticked_bug = forwarded(sandbox, 4)
    outcomes: dict[int, JSON] = {}
    shown: list[str] = []
    for bug_id, (action, send) in {
        accepted_bug: ("accept", True),
        declined_bug: ("decline", True),
        cancelled_bug: ("cancel", True),
        unticked_bug: ("accept", False),
    }.items():
        callback = answering(action, send)
        async with connect(settings, elicitation_callback=callback, mode=mode) as client:
            outcomes[bug_id] = await call(
                client, "triage_bugs", {"changes": [{"bug_id": bug_id, "action": "accept"}]}
            )
            listed = await call(client, "list_changes")
        shown += callback.shown
    assert outcomes[accepted_bug]["outcome"] == "sent"
    assert upstream(sandbox, accepted_bug).status == "accepted"
    for bug_id in (declined_bug, cancelled_bug, unticked_bug):
        assert outcomes[bug_id]["outcome"] == "declined", outcomes[bug_id]
        assert upstream(sandbox, bug_id).status == "forwarded"
        assert writes(sandbox, bug_id) == 0
    assert [c["bug_id"] for c in listed["changes"]] == [accepted_bug]
    # The form lists the bug and the action.
    assert len(shown) == 4
    assert f"accept bug {accepted_bug}" in shown[0]
    assert "(now forwarded)" in shown[0]


async def test_without_elicitation_a_one_time_token_bound_to_the_change_set(
    synced: Settings, sandbox: SandboxServer
) -> None:
    settings = synced.model_copy(update={"mirror_writes": "confirm"})
    first, second = forwarded(sandbox, 2)
    asked = {"changes": [{"bug_id": first, "action": "accept"}]}
    async with connect(settings) as client:
        needs = await call(client, "triage_bugs", asked)
        assert needs["outcome"] == "needs_confirmation"
        assert needs["plan"][0]["bug_id"] == first
        assert writes(sandbox, first) == 0
        assert (await call(client, "list_changes"))["changes"] == []
        token = needs["confirm_token"]
        other = await call_error(
            client,
            "triage_bugs",
            {"changes": [{"bug_id": second, "action": "accept"}], "confirm": token},
        )
        # The token was used up by the wrong change set: the right one needs a new token.
        spent = await call_error(client, "triage_bugs", {**asked, "confirm": token})
        fresh = (await call(client, "triage_bugs", asked))["confirm_token"]
        done = await call(client, "triage_bugs", {**asked, "confirm": fresh})
        again = await call_error(client, "triage_bugs", {**asked, "confirm": fresh})
    assert "not valid for these changes" in other
    assert "not valid" in spent
    assert "not valid" in again
    assert done["outcome"] == "sent"
    assert done["changes"][0]["state"] == "applied"
    assert (writes(sandbox, first), writes(sandbox, second)) == (1, 0)


async def test_writes_off_lists_no_write_tool(synced: Settings) -> None:
    settings = synced.model_copy(update={"mirror_writes": "off"})
    async with connect(settings) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
    assert "list_changes" in names
    assert not names & WRITE_TOOLS
    async with connect(synced) as client:
        assert {tool.name for tool in (await client.list_tools()).tools} >= WRITE_TOOLS


async def test_a_conflict_shows_both_sides_and_resolve_conflict_settles_it_both_ways(
    synced: Settings, sandbox: SandboxServer
) -> None:
    kept_bug, dropped_bug = forwarded(sandbox, 2)
    sandbox.triage_as_person(kept_bug, "mark_known")
    sandbox.triage_as_person(dropped_bug, "mark_known")
    async with connect(synced) as client:
        parked = await call(
            client,
            "triage_bugs",
            {
                "changes": [
                    {"bug_id": kept_bug, "action": "accept"},
                    {"bug_id": dropped_bug, "action": "accept"},
                ]
            },
        )
        conflicts = await call(client, "list_changes", {"state": "conflict"})
        kept_id, dropped_id = (c["change_id"] for c in parked["changes"])
        kept = await call(
            client, "resolve_conflict", {"change_id": kept_id, "resolution": "keep_local"}
        )
        dropped = await call(
            client, "resolve_conflict", {"change_id": dropped_id, "resolution": "keep_server"}
        )
        twice = await call_error(
            client, "resolve_conflict", {"change_id": dropped_id, "resolution": "keep_local"}
        )
    assert [c["state"] for c in parked["changes"]] == ["conflict", "conflict"]
    side = parked["changes"][0]
    assert side["local"]["known"] is False
    assert side["server"]["known"] is True
    assert "resolve_conflict" in side["next_step"]
    assert {c["change_id"] for c in conflicts["changes"]} == {kept_id, dropped_id}
    assert kept["change"]["state"] == "applied"
    assert kept["change"]["resolution"] == "keep_local"
    assert dropped["change"]["state"] == "cancelled"
    assert "cancelled" in twice
    assert (writes(sandbox, kept_bug), writes(sandbox, dropped_bug)) == (1, 0)
    assert upstream(sandbox, kept_bug).status == "accepted"
    assert upstream(sandbox, dropped_bug).status == "forwarded"


async def test_queued_while_testio_is_down_then_cancelled_and_the_audit_is_listed(
    synced: Settings, sandbox: SandboxServer
) -> None:
    queued_bug, cancelled_bug = forwarded(sandbox, 2)
    sandbox.faults.add(FaultRule(kind="error", status=503, times=None))
    async with connect(synced) as client:
        queued = await call(
            client,
            "triage_bugs",
            {
                "changes": [
                    {"bug_id": queued_bug, "action": "accept"},
                    {"bug_id": cancelled_bug, "action": "mark_known"},
                ]
            },
        )
        cancel_id = queued["changes"][1]["change_id"]
        cancelled = await call(client, "cancel_change", {"change_id": cancel_id})
        sandbox.faults.clear()
        await call(client, "sync_data", {"direction": "up"})
        listed = await call(client, "list_changes")
    assert queued["outcome"] == "queued"
    assert [c["state"] for c in queued["changes"]] == ["pending", "pending"]
    assert queued["push"]["stopped"]
    assert cancelled["change"]["state"] == "cancelled"
    states = {c["bug_id"]: c["state"] for c in listed["changes"]}
    assert states == {queued_bug: "applied", cancelled_bug: "cancelled"}
    assert (writes(sandbox, queued_bug), writes(sandbox, cancelled_bug)) == (1, 0)
    audit = {c["bug_id"]: [e["kind"] for e in c["events"]] for c in listed["changes"]}
    assert audit[queued_bug][0] == "created"
    assert audit[queued_bug][-1] == "applied"
    assert audit[cancelled_bug] == ["created", "cancelled"]


async def test_a_bad_field_of_a_change_is_named_with_its_path_and_what_it_accepts(
    synced: Settings, sandbox: SandboxServer
) -> None:
    [bug_id] = forwarded(sandbox, 1)
    async with connect(synced) as client:
        action = await call_error(
            client, "triage_bugs", {"changes": [{"bug_id": bug_id, "action": "approve"}]}
        )
        missing = await call_error(client, "triage_bugs", {"changes": [{"action": "accept"}]})
        shape = await call_error(client, "triage_bugs", {"changes": "all of them"})
    assert 'changes[0].action was "approve", expected one of accept, reject' in action
    assert "changes[0].bug_id is required" in missing
    assert "an object {bug_id, action, reason?, comment?}" in shape
    assert writes(sandbox, bug_id) == 0


async def test_changes_queued_while_testio_is_down_go_out_with_the_next_refresh_once_each(
    synced: Settings, sandbox: SandboxServer
) -> None:
    bugs = forwarded(sandbox, 3)
    sandbox.faults.add(FaultRule(kind="error", status=503, times=None))
    settings = synced.model_copy(update={"refresh_interval_seconds": 1.0})
    async with connect(settings) as client:
        queued = await call(
            client,
            "triage_bugs",
            {"changes": [{"bug_id": bug_id, "action": "accept"} for bug_id in bugs]},
        )
        assert [c["state"] for c in queued["changes"]] == ["pending"] * 3
        assert writes(sandbox, *bugs) == 0
        sandbox.faults.clear()  # TestIO is back: nobody calls sync_data, the refresh loop pushes

        async def all_applied() -> bool:
            listed = await call(client, "list_changes", {"state": "applied"})
            return len(listed["changes"]) == 3

        pushed = await poll(all_applied, 30.0, every=0.2)
    assert pushed, "the refresh loop did not push the queued changes"
    assert [len(sandbox.requests.writes(bug_id)) for bug_id in bugs] == [1, 1, 1]
    assert all(upstream(sandbox, bug_id).status == "accepted" for bug_id in bugs)
