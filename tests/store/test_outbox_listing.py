"""Outbox: listing changes newest first with cursors, their events bounded, the summary, and the
mirrored reject reasons."""

from __future__ import annotations

from datetime import timedelta

import pytest

from testio_mirror.errors import CursorError
from testio_mirror.store.outbox import LIST_EVENTS
from testio_mirror.store.outbox_records import ChangeRequest
from testio_mirror.triage import CHANGE_STATES, TriageState
from testio_mirror.upstream.models import RejectReason
from tests.helpers.outbox_data import OutboxMirror

SERVER = TriageState(status="rejected", known=False, fixed=False, exported=False)


async def many(box: OutboxMirror, count: int) -> list[int]:
    bugs = box.bug_ids("forwarded")[:count]
    changes = await box.mirror.outbox.enqueue(
        [ChangeRequest(bug_id, "mark_exported") for bug_id in bugs],
        requested_by="local",
        client="cli",
        strategy="manual",
    )
    return [change.id for change in changes]


async def test_a_listing_pages_newest_first_with_cursors(outbox_mirror: OutboxMirror) -> None:
    outbox = outbox_mirror.mirror.outbox
    ids = await many(outbox_mirror, 7)
    seen: list[int] = []
    page = await outbox.list_changes(limit=3)
    while True:
        seen.extend(change.id for change in page.items)
        assert len(page.cursors) == len(page.items)
        if page.next_cursor is None:
            break
        page = await outbox.list_changes(limit=3, cursor=page.next_cursor)
    assert seen == sorted(ids, reverse=True)
    # The cursor after an item goes on right after it.
    first = await outbox.list_changes(limit=3)
    after_second = await outbox.list_changes(limit=2, cursor=first.cursors[1])
    assert [c.id for c in after_second.items] == seen[2:4]


async def test_a_listing_by_state_shows_events_and_the_bug_now(
    outbox_mirror: OutboxMirror,
) -> None:
    outbox = outbox_mirror.mirror.outbox
    ids = await many(outbox_mirror, 3)
    await outbox.cancel(ids[0], by="ana")
    page = await outbox.list_changes("pending")
    assert [c.id for c in page.items] == [ids[2], ids[1]]
    assert all(c.bug_now is not None and c.bug_now.status == "forwarded" for c in page.items)
    assert [e.kind for e in page.items[0].events] == ["created"]
    with pytest.raises(CursorError, match="another listing"):
        await outbox.list_changes("cancelled", cursor=page.cursors[0])
    with pytest.raises(CursorError):
        await outbox.list_changes(cursor="not-a-cursor")
    with pytest.raises(ValueError, match="unknown change state"):
        await outbox.list_changes("done")  # type: ignore[arg-type]


async def test_a_listing_bounds_the_events_of_each_change(outbox_mirror: OutboxMirror) -> None:
    outbox = outbox_mirror.mirror.outbox
    [change_id] = await many(outbox_mirror, 1)
    for attempt in range(LIST_EVENTS):
        await outbox.claim(change_id)
        await outbox.record_not_applied(change_id, f"try {attempt}")
    [listed] = (await outbox.list_changes()).items
    assert len(listed.events) == LIST_EVENTS
    assert listed.events[-1].message == f"try {LIST_EVENTS - 1}"  # the latest ones
    assert len((await outbox.get(change_id)).events) == 2 * LIST_EVENTS + 1


async def test_the_summary_counts_states_conflicts_and_pushes(outbox_mirror: OutboxMirror) -> None:
    outbox = outbox_mirror.mirror.outbox
    empty = await outbox.summary()
    assert empty.by_state == dict.fromkeys(CHANGE_STATES, 0)
    assert (empty.oldest_pending_id, empty.last_push_at) == (None, None)
    ids = await many(outbox_mirror, 5)
    await outbox.claim(ids[0])
    await outbox.record_applied(
        ids[0],
        outbox_mirror.raw((await outbox.get(ids[0])).bug_id, exported_at="2026-11-22T00:00:00Z"),
        http_status=200,
    )
    await outbox.record_conflict(ids[1], SERVER)
    await outbox.resolve(ids[1], "keep_server", by="ana", strategy="manual")
    await outbox.record_conflict(ids[2], SERVER)
    await outbox.cancel(ids[3], by="ana")
    summary = await outbox.summary()
    assert summary.by_state == {
        "pending": 1,
        "sending": 0,
        "applied": 1,
        "conflict": 1,
        "failed": 0,
        "cancelled": 2,
    }
    pending = await outbox.get(ids[4])
    assert (summary.oldest_pending_id, summary.oldest_pending_at) == (ids[4], pending.created_at)
    assert summary.conflicts_detected == {"manual": 2}
    assert summary.conflicts_resolved == {"manual": 1}
    assert summary.resolutions == {"keep_server": 1}
    applied = await outbox.get(ids[0])
    assert summary.last_push_at == summary.last_applied_at == applied.applied_at
    # Counted from a run's start: only what happened since.
    later = await outbox.summary(since=summary.last_push_at + timedelta(days=1))
    assert (later.conflicts_detected, later.conflicts_resolved) == ({}, {})
    assert later.by_state == summary.by_state


async def test_reject_reasons_are_replaced_whole(outbox_mirror: OutboxMirror) -> None:
    outbox = outbox_mirror.mirror.outbox
    assert len(await outbox.reject_reasons()) > 1
    reasons = [
        RejectReason.from_wire({"key": "irrelevant", "name": "Irrelevant", "default_comment": "x"}),
        RejectReason.from_wire({"key": "known_bug", "name": "Known bug", "default_comment": "y"}),
    ]
    await outbox.replace_reject_reasons(reasons)
    stored = await outbox.reject_reasons()
    assert [(r.key, r.name, r.default_comment) for r in stored] == [
        ("irrelevant", "Irrelevant", "x"),
        ("known_bug", "Known bug", "y"),
    ]
    fetched = await outbox_mirror.column("SELECT DISTINCT fetched_at FROM reject_reasons")
    assert len(fetched) == 1
