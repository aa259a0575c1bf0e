"""Outbox: each move of a change (claim, not applied, failed, cancel) and its refusals, each with
its audit event; the audit is append-only."""

from __future__ import annotations

import pytest

from testio_mirror.errors import StoreError
from testio_mirror.store.outbox_records import (
    Change,
    ChangeNotFoundError,
    ChangeRequest,
    ChangeStateError,
)
from tests.helpers.outbox_data import OutboxMirror


async def pending(box: OutboxMirror, action: str = "accept", index: int = 0) -> Change:
    bug_id = box.bug_ids("forwarded")[index]
    [change] = await box.mirror.outbox.enqueue(
        [ChangeRequest(bug_id, action)],
        requested_by="local",
        client="cli",
        strategy="manual",  # type: ignore[arg-type]
    )
    return change


async def kinds(box: OutboxMirror, change_id: int) -> list[str]:
    return [e.kind for e in (await box.mirror.outbox.get(change_id)).events]


async def test_claim_moves_a_pending_change_to_sending_once(outbox_mirror: OutboxMirror) -> None:
    outbox = outbox_mirror.mirror.outbox
    change = await pending(outbox_mirror)
    claimed = await outbox.claim(change.id)
    assert claimed is not None
    assert (claimed.state, claimed.attempts) == ("sending", 1)
    assert await outbox.claim(change.id) is None  # a second push gets nothing
    stored = await outbox.get(change.id)
    assert [(e.kind, e.attempt) for e in stored.events] == [("created", None), ("sending", 1)]
    assert [c.id for c in await outbox.sending_changes()] == [change.id]
    assert await outbox.pending_changes() == []


async def test_claim_is_committed_before_anything_else(outbox_mirror: OutboxMirror) -> None:
    change = await pending(outbox_mirror)
    await outbox_mirror.mirror.outbox.claim(change.id)
    # Another connection (another process) sees it sending at once.
    assert await outbox_mirror.column("SELECT state FROM changes WHERE id = ?", change.id) == [
        "sending"
    ]


async def test_claiming_an_unknown_change_says_so(outbox_mirror: OutboxMirror) -> None:
    with pytest.raises(ChangeNotFoundError, match="no change 424242"):
        await outbox_mirror.mirror.outbox.claim(424242)


async def test_not_applied_goes_back_to_pending_and_counts_attempts(
    outbox_mirror: OutboxMirror,
) -> None:
    outbox = outbox_mirror.mirror.outbox
    change = await pending(outbox_mirror)
    await outbox.claim(change.id)
    back = await outbox.record_not_applied(change.id, "TestIO answered 503", http_status=503)
    assert (back.state, back.last_error) == ("pending", "TestIO answered 503")
    again = await outbox.claim(change.id)
    assert again is not None
    assert again.attempts == 2
    reconciled = await outbox.record_not_applied(change.id, "not applied", via="reconciled")
    assert reconciled.state == "pending"
    events = (await outbox.get(change.id)).events
    assert [(e.kind, e.outcome, e.http_status) for e in events[2:]] == [
        ("answer", "not_applied", 503),
        ("sending", None, None),
        ("reconciled", "not_applied", None),
    ]
    with pytest.raises(ChangeStateError, match="is pending"):
        await outbox.record_not_applied(change.id, "again")


async def test_failed_is_settled_from_sending_or_pending(outbox_mirror: OutboxMirror) -> None:
    outbox = outbox_mirror.mirror.outbox
    sent = await pending(outbox_mirror)
    await outbox.claim(sent.id)
    failed = await outbox.record_failed(sent.id, "TestIO refused it (422)", http_status=422)
    assert (failed.state, failed.last_error) == ("failed", "TestIO refused it (422)")
    assert await kinds(outbox_mirror, sent.id) == ["created", "sending", "answer", "failed"]
    never_sent = await pending(outbox_mirror, index=1)
    await outbox.record_failed(never_sent.id, "unknown reject reason")
    assert await kinds(outbox_mirror, never_sent.id) == ["created", "failed"]
    with pytest.raises(ChangeStateError, match="is failed"):
        await outbox.record_failed(sent.id, "twice")
    assert await outbox.claim(sent.id) is None


async def test_cancel_takes_pending_and_conflict_changes_only(outbox_mirror: OutboxMirror) -> None:
    outbox = outbox_mirror.mirror.outbox
    change = await pending(outbox_mirror)
    cancelled = await outbox.cancel(change.id, by="ana")
    assert cancelled.state == "cancelled"
    events = (await outbox.get(change.id)).events
    assert [(e.kind, e.actor) for e in events] == [("created", "local"), ("cancelled", "ana")]
    with pytest.raises(ChangeStateError, match="is cancelled: it cannot be cancelled"):
        await outbox.cancel(change.id, by="ana")
    sending = await pending(outbox_mirror, index=1)
    await outbox.claim(sending.id)
    with pytest.raises(ChangeStateError, match="is sending"):
        await outbox.cancel(sending.id, by="ana")
    await outbox.record_applied(sending.id, outbox_mirror.raw(sending.bug_id, status="accepted"))
    with pytest.raises(ChangeStateError, match="is applied: it cannot be cancelled"):
        await outbox.cancel(sending.id, by="ana")
    with pytest.raises(ChangeNotFoundError):
        await outbox.cancel(424242, by="ana")


async def test_the_audit_is_append_only(outbox_mirror: OutboxMirror) -> None:
    change = await pending(outbox_mirror)
    with pytest.raises(StoreError):
        async with outbox_mirror.mirror.db.transaction() as conn:
            await conn.execute("UPDATE change_events SET actor = 'someone else'")
    assert (await outbox_mirror.mirror.outbox.get(change.id)).events[0].actor == "local"


async def test_in_state_refuses_an_unknown_state(outbox_mirror: OutboxMirror) -> None:
    with pytest.raises(ValueError, match="unknown change state"):
        await outbox_mirror.mirror.outbox.in_state("done")  # type: ignore[arg-type]
