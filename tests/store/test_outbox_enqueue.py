"""Outbox: storing a change set: pending with its base from the mirror, all or nothing, and never
a second live change deciding the same thing for a bug."""

from __future__ import annotations

import pytest

from testio_mirror.errors import StoreError
from testio_mirror.store.outbox_records import ChangeRequest, ChangeStateError, UnknownBugsError
from testio_mirror.store.sqlite.upsert import tombstone
from testio_mirror.triage import TriageState
from tests.helpers.outbox_data import OutboxMirror

UNKNOWN = 9_999_999


async def enqueue(box: OutboxMirror, *requests: ChangeRequest, strategy: str = "manual") -> list:
    return await box.mirror.outbox.enqueue(
        list(requests), requested_by="ana", client="claude-code/2.1", strategy=strategy
    )


async def test_a_change_is_stored_pending_with_the_bug_as_mirrored(
    outbox_mirror: OutboxMirror,
) -> None:
    bug_id = outbox_mirror.bug_ids("forwarded")[0]
    [change] = await enqueue(outbox_mirror, ChangeRequest(bug_id, "reject", "irrelevant", "no"))
    expected_base = TriageState.of_bug(outbox_mirror.snap["bugs"][bug_id])
    assert (change.state, change.attempts, change.bug_id, change.action) == (
        "pending",
        0,
        bug_id,
        "reject",
    )
    assert (change.reason, change.comment) == ("irrelevant", "no")
    assert change.base == expected_base == change.bug_now
    assert (change.requested_by, change.client, change.strategy) == (
        "ana",
        "claude-code/2.1",
        "manual",
    )
    stored = await outbox_mirror.mirror.outbox.get(change.id)
    assert [e.kind for e in stored.events] == ["created"]
    assert stored.events[0].actor == "ana"
    assert stored.events[0].data is not None
    assert stored.events[0].data["base"] == {
        "status": "forwarded",
        "known": expected_base.known,
        "fixed": False,
        "exported": False,
    }


async def test_an_unknown_bug_stores_nothing_of_the_set(outbox_mirror: OutboxMirror) -> None:
    known = outbox_mirror.bug_ids("forwarded")[0]
    with pytest.raises(UnknownBugsError, match=f"bug {UNKNOWN} not in the mirror") as caught:
        await enqueue(
            outbox_mirror, ChangeRequest(known, "accept"), ChangeRequest(UNKNOWN, "accept")
        )
    assert caught.value.bug_ids == [UNKNOWN]
    assert await outbox_mirror.column("SELECT count(*) FROM changes") == [0]
    assert await outbox_mirror.column("SELECT count(*) FROM change_events") == [0]


async def test_a_removed_bug_is_not_in_the_mirror(outbox_mirror: OutboxMirror) -> None:
    bug_id = outbox_mirror.bug_ids("forwarded")[0]
    async with outbox_mirror.mirror.db.transaction() as conn:
        await tombstone(conn, "bugs", [bug_id], outbox_mirror.stamp())
    with pytest.raises(UnknownBugsError):
        await enqueue(outbox_mirror, ChangeRequest(bug_id, "accept"))


async def test_asking_the_same_again_returns_the_live_change(outbox_mirror: OutboxMirror) -> None:
    bug_id = outbox_mirror.bug_ids("forwarded")[0]
    [first] = await enqueue(outbox_mirror, ChangeRequest(bug_id, "accept"))
    again, other = await enqueue(
        outbox_mirror, ChangeRequest(bug_id, "accept"), ChangeRequest(bug_id, "mark_known")
    )
    assert again.id == first.id
    assert other.id != first.id
    # Twice in one set: one change.
    a, b = await enqueue(
        outbox_mirror, ChangeRequest(bug_id, "mark_fixed"), ChangeRequest(bug_id, "mark_fixed")
    )
    assert a.id == b.id
    assert await outbox_mirror.column("SELECT count(*) FROM changes") == [3]


async def test_a_contrary_decision_is_refused_and_nothing_stored(
    outbox_mirror: OutboxMirror,
) -> None:
    first_bug, second_bug = outbox_mirror.bug_ids("forwarded")[:2]
    [accept] = await enqueue(outbox_mirror, ChangeRequest(first_bug, "accept"))
    with pytest.raises(ChangeStateError, match=f"change {accept.id} \\(pending\\) to accept"):
        await enqueue(
            outbox_mirror,
            ChangeRequest(second_bug, "accept"),
            ChangeRequest(first_bug, "reject", "irrelevant"),
        )
    assert await outbox_mirror.column("SELECT bug_id FROM changes") == [first_bug]
    # Once settled, the bug takes a new decision.
    await outbox_mirror.mirror.outbox.cancel(accept.id, by="ana")
    [reject] = await enqueue(outbox_mirror, ChangeRequest(first_bug, "reject", "irrelevant"))
    assert reject.state == "pending"


async def test_the_schema_itself_allows_one_live_change_per_decision(
    outbox_mirror: OutboxMirror,
) -> None:
    bug_id = outbox_mirror.bug_ids("forwarded")[0]
    [change] = await enqueue(outbox_mirror, ChangeRequest(bug_id, "accept"))
    with pytest.raises(StoreError):
        async with outbox_mirror.mirror.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO changes (bug_id, action, decision, base_known, base_fixed, "
                "base_exported, strategy, requested_by, client, created_at, updated_at, state) "
                "SELECT bug_id, 'reject', decision, 0, 0, 0, strategy, 'x', 'x', created_at, "
                "updated_at, 'pending' FROM changes WHERE id = ?",
                (change.id,),
            )
    assert await outbox_mirror.column("SELECT count(*) FROM changes") == [1]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (ChangeRequest(1, "approve"), "unknown triage action"),  # type: ignore[arg-type]
        (ChangeRequest(1, "accept", reason="irrelevant"), "takes no reason"),
        (ChangeRequest(1, "mark_known", comment="why"), "takes no reason"),
    ],
)
async def test_a_malformed_request_is_refused(
    outbox_mirror: OutboxMirror, request_: ChangeRequest, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await enqueue(outbox_mirror, request_)


async def test_an_unknown_strategy_is_refused(outbox_mirror: OutboxMirror) -> None:
    bug_id = outbox_mirror.bug_ids("forwarded")[0]
    with pytest.raises(ValueError, match="unknown conflict strategy"):
        await enqueue(outbox_mirror, ChangeRequest(bug_id, "accept"), strategy="newest")
