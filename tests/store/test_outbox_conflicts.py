"""Outbox: conflicts seen by a sync (parked for manual, noted for the other strategies), by the
push (record_conflict), and their resolutions."""

from __future__ import annotations

import pytest

from testio_mirror.store.outbox_records import Change, ChangeRequest, ChangeStateError
from testio_mirror.triage import TriageState
from tests.helpers.outbox_data import OutboxMirror

SERVER = TriageState(status="rejected", known=False, fixed=False, exported=False)


async def pending(box: OutboxMirror, strategy: str = "manual", index: int = 0) -> Change:
    bug_id = box.bug_ids("forwarded", known=False)[index]
    [change] = await box.mirror.outbox.enqueue(
        [ChangeRequest(bug_id, "accept")],
        requested_by="local",
        client="cli",
        strategy=strategy,  # type: ignore[arg-type]
    )
    return change


async def test_a_sync_parks_a_manual_change_as_a_conflict(outbox_mirror: OutboxMirror) -> None:
    change = await pending(outbox_mirror)
    await outbox_mirror.sync_bug(change.bug_id, status="rejected")
    parked = await outbox_mirror.mirror.outbox.get(change.id)
    assert parked.state == "conflict"
    assert parked.server_side == SERVER
    assert parked.base.status == "forwarded"
    assert parked.conflict_seen_at is not None
    conflict = parked.events[-1]
    assert (conflict.kind, conflict.actor, conflict.outcome) == ("conflict", "sync", "conflict")
    assert conflict.data is not None
    assert (conflict.data["local"]["status"], conflict.data["server"]["status"]) == (
        "forwarded",
        "rejected",
    )
    assert await outbox_mirror.mirror.outbox.claim(change.id) is None  # never sent as it is


@pytest.mark.parametrize("strategy", ["server_wins", "local_wins", "latest"])
async def test_a_sync_notes_the_conflict_of_other_strategies(
    outbox_mirror: OutboxMirror, strategy: str
) -> None:
    change = await pending(outbox_mirror, strategy)
    await outbox_mirror.sync_bug(change.bug_id, status="rejected")
    noted = await outbox_mirror.mirror.outbox.get(change.id)
    assert noted.state == "pending"
    assert noted.server_side == SERVER
    assert noted.conflict_seen_at is not None
    assert [(e.kind, e.outcome) for e in noted.events] == [
        ("created", None),
        ("conflict", "pending"),
    ]


async def test_a_sync_without_a_triage_change_is_no_conflict(outbox_mirror: OutboxMirror) -> None:
    change = await pending(outbox_mirror)
    await outbox_mirror.sync_bug(change.bug_id, title="Renamed in TestIO")
    await outbox_mirror.sync_bug(change.bug_id)
    same = await outbox_mirror.mirror.outbox.get(change.id)
    assert (same.state, same.server_side) == ("pending", None)
    assert [e.kind for e in same.events] == ["created"]


async def test_the_same_server_state_is_noted_once(outbox_mirror: OutboxMirror) -> None:
    change = await pending(outbox_mirror, "local_wins")
    await outbox_mirror.sync_bug(change.bug_id, status="rejected")
    first_seen = (await outbox_mirror.mirror.outbox.get(change.id)).conflict_seen_at
    await outbox_mirror.sync_bug(change.bug_id, status="rejected", title="Again")
    again = await outbox_mirror.mirror.outbox.get(change.id)
    assert [e.kind for e in again.events] == ["created", "conflict"]
    assert again.conflict_seen_at == first_seen


async def test_a_conflict_gets_the_newer_server_side(outbox_mirror: OutboxMirror) -> None:
    change = await pending(outbox_mirror)
    await outbox_mirror.sync_bug(change.bug_id, status="rejected")
    await outbox_mirror.sync_bug(change.bug_id, status="rejected", known=True)
    parked = await outbox_mirror.mirror.outbox.get(change.id)
    assert parked.state == "conflict"
    assert parked.server_side == TriageState("rejected", known=True, fixed=False, exported=False)
    assert [e.kind for e in parked.events] == ["created", "conflict", "conflict"]


async def test_a_sending_change_is_left_to_the_push(outbox_mirror: OutboxMirror) -> None:
    change = await pending(outbox_mirror)
    await outbox_mirror.mirror.outbox.claim(change.id)
    await outbox_mirror.sync_bug(change.bug_id, status="rejected")
    assert (await outbox_mirror.mirror.outbox.get(change.id)).state == "sending"


async def test_the_push_parks_a_conflict_and_a_person_keeps_local(
    outbox_mirror: OutboxMirror,
) -> None:
    outbox = outbox_mirror.mirror.outbox
    change = await pending(outbox_mirror)
    await outbox.claim(change.id)
    parked = await outbox.record_conflict(change.id, SERVER)
    assert (parked.state, parked.server_side) == ("conflict", SERVER)
    with pytest.raises(ChangeStateError, match="is conflict"):
        await outbox.record_not_applied(change.id, "no")
    kept = await outbox.resolve(change.id, "keep_local", by="ana", strategy="manual")
    assert kept.state == "pending"
    assert kept.base == SERVER  # the next send is a plain write against what TestIO holds
    assert (kept.resolution, kept.resolution_strategy, kept.resolved_by) == (
        "keep_local",
        "manual",
        "ana",
    )
    resolved = (await outbox.get(change.id)).events[-1]
    assert resolved.kind == "resolved"
    assert resolved.data is not None
    assert resolved.data["resolution"] == "keep_local"
    again = await outbox.claim(change.id)
    assert again is not None
    assert again.attempts == 2


async def test_keep_server_drops_the_change(outbox_mirror: OutboxMirror) -> None:
    outbox = outbox_mirror.mirror.outbox
    change = await pending(outbox_mirror)
    await outbox.record_conflict(change.id, SERVER)
    dropped = await outbox.resolve(change.id, "keep_server", by="ana", strategy="manual")
    assert (dropped.state, dropped.resolution) == ("cancelled", "keep_server")
    with pytest.raises(ChangeStateError, match="is cancelled"):
        await outbox.resolve(change.id, "keep_local", by="ana", strategy="manual")


async def test_a_person_resolves_only_a_parked_conflict(outbox_mirror: OutboxMirror) -> None:
    change = await pending(outbox_mirror)
    with pytest.raises(ChangeStateError, match="is pending: it cannot be resolved"):
        await outbox_mirror.mirror.outbox.resolve(
            change.id, "keep_local", by="ana", strategy="manual"
        )


async def test_server_wins_at_send_time_records_both_sides(outbox_mirror: OutboxMirror) -> None:
    outbox = outbox_mirror.mirror.outbox
    change = await pending(outbox_mirror, "server_wins")
    await outbox.claim(change.id)
    dropped = await outbox.resolve(
        change.id, "server_wins", by="push", strategy="server_wins", server_side=SERVER
    )
    assert (dropped.state, dropped.server_side, dropped.resolution) == (
        "cancelled",
        SERVER,
        "server_wins",
    )
    assert [e.kind for e in (await outbox.get(change.id)).events] == [
        "created",
        "sending",
        "conflict",
        "resolved",
    ]


@pytest.mark.parametrize("resolution", ["local_wins", "latest_local"])
async def test_local_wins_at_send_time_keeps_sending_against_the_server_side(
    outbox_mirror: OutboxMirror, resolution: str
) -> None:
    outbox = outbox_mirror.mirror.outbox
    change = await pending(outbox_mirror, "local_wins")
    await outbox.claim(change.id)
    kept = await outbox.resolve(
        change.id,
        resolution,  # type: ignore[arg-type]
        by="push",
        strategy="local_wins",
        server_side=SERVER,
    )
    assert (kept.state, kept.base, kept.resolution) == ("sending", SERVER, resolution)


async def test_a_strategy_resolution_needs_a_server_side(outbox_mirror: OutboxMirror) -> None:
    change = await pending(outbox_mirror, "latest")
    with pytest.raises(ChangeStateError, match="no conflict recorded"):
        await outbox_mirror.mirror.outbox.resolve(
            change.id, "latest_server", by="push", strategy="latest"
        )
    with pytest.raises(ValueError, match="unknown resolution"):
        await outbox_mirror.mirror.outbox.resolve(
            change.id,
            "newest",  # type: ignore[arg-type]
            by="push",
            strategy="latest",
        )
    # A sync's note is the server side a strategy resolves against.
    await outbox_mirror.sync_bug(change.bug_id, status="rejected")
    dropped = await outbox_mirror.mirror.outbox.resolve(
        change.id, "latest_server", by="push", strategy="latest"
    )
    assert dropped.state == "cancelled"
