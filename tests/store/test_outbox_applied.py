"""Outbox: an applied answer updates the mirrored bug (lists, search, statistics) and the change
in one transaction; a failure between the two leaves neither; the bug's other pending changes
follow our own write."""

from __future__ import annotations

import pytest

import testio_mirror.store.outbox as outbox_module
from testio_mirror.store.outbox_records import Change, ChangeRequest, ChangeStateError
from testio_mirror.store.records import BugFilter
from testio_mirror.triage import TriageState
from testio_mirror.upstream.errors import BadResponseError
from tests.helpers.outbox_data import OutboxMirror


async def claimed(box: OutboxMirror, bug_id: int, action: str = "accept") -> Change:
    [change] = await box.mirror.outbox.enqueue(
        [ChangeRequest(bug_id, action)],  # type: ignore[arg-type]
        requested_by="local",
        client="cli",
        strategy="manual",
    )
    sending = await box.mirror.outbox.claim(change.id)
    assert sending is not None
    return sending


async def test_applied_updates_the_bug_and_the_change_at_once(outbox_mirror: OutboxMirror) -> None:
    mirror = outbox_mirror.mirror
    bug_id = outbox_mirror.bug_ids("forwarded")[0]
    product_id = outbox_mirror.snap["bugs"][bug_id]["product"]["id"]
    before = await mirror.bugs.stats("status", BugFilter(product_id=product_id))
    change = await claimed(outbox_mirror, bug_id)
    answer = outbox_mirror.raw(bug_id, status="accepted", title="Quetzal menu overlaps")
    applied = await mirror.outbox.record_applied(change.id, answer, http_status=200)
    assert applied.state == "applied"
    assert applied.applied_at is not None
    assert applied.bug_now == TriageState.of_bug(answer)
    page = await mirror.bugs.list_bugs(BugFilter(statuses=["accepted"]), limit=200)
    assert bug_id in [bug.id for bug in page.items]
    assert [hit.id for hit in await mirror.search.search("quetzal")] == [bug_id]
    after = await mirror.bugs.stats("status", BugFilter(product_id=product_id))
    assert after.value.accepted == before.value.accepted + 1
    events = (await mirror.outbox.get(change.id)).events
    assert [(e.kind, e.outcome, e.http_status) for e in events[-2:]] == [
        ("answer", "applied", 200),
        ("applied", None, None),
    ]


async def test_a_failure_between_bug_and_change_leaves_neither(
    outbox_mirror: OutboxMirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = outbox_mirror.mirror
    bug_id = outbox_mirror.bug_ids("forwarded")[0]
    change = await claimed(outbox_mirror, bug_id)

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the process fails between the bug and the change")

    monkeypatch.setattr(outbox_module, "mark_applied", broken)
    with pytest.raises(RuntimeError):
        await mirror.outbox.record_applied(change.id, outbox_mirror.raw(bug_id, status="accepted"))
    assert (await mirror.outbox.get(change.id)).state == "sending"
    assert await outbox_mirror.column("SELECT status FROM bugs WHERE id = ?", bug_id) == [
        "forwarded"
    ]


async def test_applied_is_refused_unless_sending(outbox_mirror: OutboxMirror) -> None:
    mirror = outbox_mirror.mirror
    bug_id = outbox_mirror.bug_ids("forwarded")[0]
    [change] = await mirror.outbox.enqueue(
        [ChangeRequest(bug_id, "accept")], requested_by="local", client="cli", strategy="manual"
    )
    with pytest.raises(ChangeStateError, match="is pending: it cannot be recorded as applied"):
        await mirror.outbox.record_applied(change.id, outbox_mirror.raw(bug_id, status="accepted"))
    assert await outbox_mirror.column("SELECT status FROM bugs WHERE id = ?", bug_id) == [
        "forwarded"
    ]


async def test_an_answer_about_another_bug_is_refused(outbox_mirror: OutboxMirror) -> None:
    first, second = outbox_mirror.bug_ids("forwarded")[:2]
    change = await claimed(outbox_mirror, first)
    with pytest.raises(BadResponseError, match=f"is bug {second}, not bug {first}"):
        await outbox_mirror.mirror.outbox.record_applied(
            change.id, outbox_mirror.raw(second, status="accepted")
        )
    assert (await outbox_mirror.mirror.outbox.get(change.id)).state == "sending"
    with pytest.raises(BadResponseError):
        await outbox_mirror.mirror.outbox.record_applied(change.id, {"title": "no id"})


async def test_a_reconciled_change_is_applied_without_a_conflict_of_its_own(
    outbox_mirror: OutboxMirror,
) -> None:
    mirror = outbox_mirror.mirror
    bug_id = outbox_mirror.bug_ids("forwarded", known=False)[0]
    accept = await claimed(outbox_mirror, bug_id)
    [known] = await mirror.outbox.enqueue(
        [ChangeRequest(bug_id, "mark_known")], requested_by="local", client="cli", strategy="manual"
    )
    applied = await mirror.outbox.record_applied(
        accept.id, outbox_mirror.raw(bug_id, status="accepted"), via="reconciled"
    )
    assert [e.kind for e in (await mirror.outbox.get(accept.id)).events][-2:] == [
        "reconciled",
        "applied",
    ]
    # The other change now expects the bug as our write left it: no conflict with ourselves.
    moved = await mirror.outbox.get(known.id)
    assert moved.state == "pending"
    assert moved.base == applied.bug_now
    assert moved.server_side is None
    assert [e.kind for e in moved.events] == ["created", "rebased"]
