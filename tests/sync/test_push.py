"""The push against the sandbox over HTTP and a real mirror: each change applied once (the request
log shows one write), the mirror showing it at once; the strategies on a bug another user triaged
meanwhile; lost answers reconciled, never sent twice; TestIO down leaves the changes pending and a
later push sends them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from testio_mirror.app import App, open_app
from testio_mirror.sandbox import SandboxServer
from testio_mirror.sandbox.faults import FaultRule
from testio_mirror.store.outbox_records import ChangeRequest
from testio_mirror.sync.models import SyncDirection, SyncOptions, SyncStatus
from testio_mirror.triage import ConflictStrategy, TriageState
from tests.helpers.polling import wait_for
from tests.helpers.settings import make_settings
from tests.helpers.sync_runs import run_sync
from tests.helpers.triage_bugs import forwarded


@pytest.fixture
async def app(sandbox: SandboxServer, tmp_path: Path) -> AsyncIterator[App]:
    settings = make_settings(sandbox, tmp_path / "home", retry_max_attempts=2)
    async with open_app(settings) as opened:
        await run_sync(opened, options=SyncOptions(direction=SyncDirection.DOWN))
        yield opened


def server_state(sandbox: SandboxServer, bug_id: int) -> TriageState:
    return TriageState.of_bug(sandbox.world.bug(bug_id))


async def enqueue(
    app: App, *changes: ChangeRequest, strategy: ConflictStrategy = "manual"
) -> list[int]:
    stored = await app.mirror.outbox.enqueue(
        list(changes), requested_by="ana", client="test", strategy=strategy
    )
    return [c.id for c in stored]


async def mirrored(app: App, bug_id: int) -> Any:
    return (await app.mirror.bugs.get_bug(bug_id)).value


async def test_accept_reject_and_mark_known_are_applied_once_and_mirrored_at_once(
    app: App, sandbox: SandboxServer
) -> None:
    accept_bug, reject_bug, known_bug = forwarded(sandbox, 3)
    reason = sandbox.world.reject_reasons()[0]["key"]
    ids = await enqueue(
        app,
        ChangeRequest(accept_bug, "accept"),
        ChangeRequest(reject_bug, "reject", reason=reason, comment="cannot reproduce"),
        ChangeRequest(known_bug, "mark_known"),
    )
    summary = await app.sync.pusher.push()

    assert (summary.considered, summary.sent, summary.applied, summary.stopped) == (3, 3, 3, None)
    assert server_state(sandbox, accept_bug).status == "accepted"
    assert server_state(sandbox, reject_bug).status == "rejected"
    assert server_state(sandbox, known_bug).known
    for bug_id in (accept_bug, reject_bug, known_bug):
        assert len(sandbox.requests.writes(bug_id)) == 1
    assert [(await app.mirror.outbox.get(i)).state for i in ids] == ["applied"] * 3
    # The mirror shows the answer at once, without a pull.
    assert (await mirrored(app, accept_bug)).status == "accepted"
    assert (await mirrored(app, reject_bug)).status == "rejected"
    assert (await mirrored(app, known_bug)).known is True
    # A second push has nothing to send.
    again = await app.sync.pusher.push()
    assert (again.considered, again.sent) == (0, 0)
    assert len(sandbox.requests.writes()) == 3


async def test_manual_parks_a_conflict_and_keep_local_then_sends_it(
    app: App, sandbox: SandboxServer
) -> None:
    (bug_id,) = forwarded(sandbox, 1)
    [change_id] = await enqueue(app, ChangeRequest(bug_id, "accept"))
    reason = sandbox.world.reject_reasons()[0]["key"]
    sandbox.triage_as_person(bug_id, "reject", reason=reason)

    summary = await app.sync.pusher.push()
    parked = await app.mirror.outbox.get(change_id)
    assert (summary.conflicts, summary.sent, parked.state) == (1, 0, "conflict")
    assert parked.server_side is not None
    assert parked.server_side.status == "rejected"
    assert parked.base.status == "forwarded"
    assert sandbox.requests.writes(bug_id) == []

    await app.mirror.outbox.resolve(change_id, "keep_local", by="ana", strategy="manual")
    await app.sync.pusher.push()
    assert (await app.mirror.outbox.get(change_id)).state == "applied"
    assert server_state(sandbox, bug_id).status == "accepted"
    assert len(sandbox.requests.writes(bug_id)) == 1


async def test_manual_keep_server_sends_nothing(app: App, sandbox: SandboxServer) -> None:
    (bug_id,) = forwarded(sandbox, 1)
    [change_id] = await enqueue(app, ChangeRequest(bug_id, "accept"))
    sandbox.triage_as_person(bug_id, "mark_known")
    await app.sync.pusher.push()
    await app.mirror.outbox.resolve(change_id, "keep_server", by="ana", strategy="manual")
    await app.sync.pusher.push()
    assert (await app.mirror.outbox.get(change_id)).state == "cancelled"
    assert sandbox.requests.writes(bug_id) == []
    assert server_state(sandbox, bug_id).status == "forwarded"


@pytest.mark.parametrize(
    ("strategy", "writes", "state", "resolution"),
    [
        ("server_wins", 0, "cancelled", "server_wins"),
        ("local_wins", 1, "applied", "local_wins"),
        # The upstream change is first seen at send time: it counts as the later one.
        ("latest", 0, "cancelled", "latest_server"),
    ],
)
async def test_each_strategy_on_a_bug_another_user_changed(
    app: App,
    sandbox: SandboxServer,
    strategy: ConflictStrategy,
    writes: int,
    state: str,
    resolution: str,
) -> None:
    (bug_id,) = forwarded(sandbox, 1)
    [change_id] = await enqueue(app, ChangeRequest(bug_id, "accept"), strategy=strategy)
    sandbox.triage_as_person(bug_id, "mark_known")

    await app.sync.pusher.push()
    change = await app.mirror.outbox.get(change_id)
    assert (change.state, change.resolution) == (state, resolution)
    assert len(sandbox.requests.writes(bug_id)) == writes
    assert server_state(sandbox, bug_id).known  # the other user's decision stays
    assert (await mirrored(app, bug_id)).known is True  # and the mirror shows it
    summary = await app.mirror.outbox.summary()
    assert summary.conflicts_detected == {strategy: 1}


@pytest.mark.parametrize(
    "rule",
    [
        FaultRule(kind="apply_then_hang", method="PUT", path="bugs/*/accept", hang_seconds=30),
        FaultRule(kind="apply_then_error", method="PUT", path="bugs/*/accept", status=503),
    ],
    ids=["apply-then-time-out", "apply-then-503"],
)
async def test_a_lost_answer_ends_applied_not_duplicated(
    sandbox: SandboxServer, tmp_path: Path, rule: FaultRule
) -> None:
    settings = make_settings(sandbox, tmp_path / "home", http_timeout_seconds=1.0)
    async with open_app(settings) as app:
        await run_sync(app, options=SyncOptions(direction=SyncDirection.DOWN))
        (bug_id,) = forwarded(sandbox, 1)
        [change_id] = await enqueue(app, ChangeRequest(bug_id, "accept"))
        sandbox.faults.add(rule)
        summary = await app.sync.pusher.push()
        change = await app.mirror.outbox.get(change_id)
    assert (summary.sent, summary.applied, change.state) == (1, 1, "applied")
    assert [e.kind for e in change.events][-2:] == ["reconciled", "applied"]
    assert wait_for(lambda: len(sandbox.requests.writes(bug_id)) == 1)
    assert len(sandbox.requests.writes(bug_id)) == 1


async def test_a_change_left_sending_by_a_dead_process_is_reconciled_before_anything_is_sent(
    app: App, sandbox: SandboxServer
) -> None:
    applied_bug, lost_bug = forwarded(sandbox, 2)
    applied_id, lost_id = await enqueue(
        app, ChangeRequest(applied_bug, "accept"), ChangeRequest(lost_bug, "accept")
    )
    # As a process killed after claiming: one request reached TestIO, the other never left.
    for change_id in (applied_id, lost_id):
        assert await app.mirror.outbox.claim(change_id) is not None
    sandbox.world.triage(applied_bug, "accept")

    summary = await app.sync.pusher.push()
    assert (await app.mirror.outbox.get(applied_id)).state == "applied"
    assert (await app.mirror.outbox.get(lost_id)).state == "applied"
    assert sandbox.requests.writes(applied_bug) == []  # reconciled, never sent again
    assert len(sandbox.requests.writes(lost_bug)) == 1  # sent once, after its reconcile
    assert summary.sent == 1


async def test_testio_down_leaves_changes_pending_and_a_later_sync_sends_each_once(
    app: App, sandbox: SandboxServer
) -> None:
    bug_ids = forwarded(sandbox, 3)
    ids = await enqueue(app, *(ChangeRequest(b, "mark_fixed") for b in bug_ids))
    sandbox.faults.add(FaultRule(kind="error", status=503, times=None))

    down = await run_sync(app, options=SyncOptions(direction=SyncDirection.UP))
    assert down.status is SyncStatus.FAILED
    assert down.push is not None
    assert down.push.stopped is not None
    assert "TestIO could not be reached" in down.push.stopped
    assert [(await app.mirror.outbox.get(i)).state for i in ids] == ["pending"] * 3
    assert sandbox.requests.writes() == []

    sandbox.faults.clear()
    back = await run_sync(app)  # both ways: push, then pull
    assert back.status is SyncStatus.SUCCESS
    assert back.push is not None
    assert back.push.applied == 3
    assert [(await app.mirror.outbox.get(i)).state for i in ids] == ["applied"] * 3
    for bug_id in bug_ids:
        assert len(sandbox.requests.writes(bug_id)) == 1
        assert server_state(sandbox, bug_id).fixed


async def test_a_refused_reason_fails_the_change_without_retrying(
    app: App, sandbox: SandboxServer
) -> None:
    (bug_id,) = forwarded(sandbox, 1)
    [change_id] = await enqueue(app, ChangeRequest(bug_id, "reject", reason="no_such_reason"))
    summary = await app.sync.pusher.push()
    change = await app.mirror.outbox.get(change_id)
    assert (summary.failed, change.state) == (1, "failed")
    assert change.last_error is not None
    assert "HTTP 422" in change.last_error
    assert len(sandbox.requests.writes(bug_id)) == 1
