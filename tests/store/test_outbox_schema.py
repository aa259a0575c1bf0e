"""Outbox and bugs: ``triage_seen_at`` (when the mirror first observed a bug's triage state),
migration 7 on a mirror of version 6, a nuke cancelling live changes, and the bug write's cheap
path while nothing waits in the outbox."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from testio_mirror.settings import load_settings
from testio_mirror.store.bugs import write_bugs
from testio_mirror.store.mirror import Mirror
from testio_mirror.store.outbox_records import ChangeRequest
from testio_mirror.store.outbox_rows import triage_text
from testio_mirror.store.sqlite.db import Database
from testio_mirror.triage import TriageState
from testio_mirror.upstream.models import Bug
from tests.helpers.outbox_data import OutboxMirror
from tests.helpers.seeded_mirror import Statement
from tests.helpers.store_data import STAMP_1, small_world, write_world


async def seen_at(box: OutboxMirror, bug_id: int) -> str:
    [value] = await box.column("SELECT triage_seen_at FROM bugs WHERE id = ?", bug_id)
    return str(value)


async def test_triage_seen_at_moves_only_with_the_triage_state(
    outbox_mirror: OutboxMirror,
) -> None:
    bug_id = outbox_mirror.bug_ids("forwarded")[0]
    first = await seen_at(outbox_mirror, bug_id)
    assert await outbox_mirror.column("SELECT fetched_at FROM bugs WHERE id = ?", bug_id) == [first]
    await outbox_mirror.sync_bug(bug_id, title="Renamed")  # content changes, triage does not
    assert await seen_at(outbox_mirror, bug_id) == first
    await outbox_mirror.sync_bug(bug_id, title="Renamed", status="accepted")
    moved = await seen_at(outbox_mirror, bug_id)
    assert moved > first
    await outbox_mirror.sync_bug(bug_id, title="Renamed", status="accepted")  # unchanged
    await outbox_mirror.sync_bug(bug_id, title="Again", status="accepted")
    assert await seen_at(outbox_mirror, bug_id) == moved
    await outbox_mirror.sync_bug(bug_id, title="Again", status="accepted", fixed_at="2026-12-01")
    assert await seen_at(outbox_mirror, bug_id) > moved
    [triage] = await outbox_mirror.column("SELECT triage FROM bugs WHERE id = ?", bug_id)
    assert json.loads(triage)[0] == "accepted"
    assert json.loads(triage)[2] == 1


async def test_migration_7_backfills_a_mirror_of_version_6(tmp_path: Path) -> None:
    path = tmp_path / "home" / "mirror.db"
    world = small_world()
    old = await Database.open(path, target_version=6)
    try:
        await write_world(old, world, STAMP_1, before_outbox=True)
        async with old.transaction() as conn:
            await conn.execute("UPDATE bugs SET changed_at = '2026-01-01T00:00:00.000000Z'")
    finally:
        await old.close()
    database = await Database.open(path)
    try:
        async with database.reader() as conn:
            rows = await conn.execute_fetchall("SELECT id, triage, triage_seen_at FROM bugs")
            outbox_rows = await conn.execute_fetchall("SELECT count(*) FROM changes")
    finally:
        await database.close()
    snap = world.snapshot()["bugs"]
    assert len(rows) == len(snap)
    for bug_id, triage, seen in rows:
        # Exactly the text the bug write stores: the first sync after the upgrade is no news.
        assert triage == triage_text(TriageState.of_bug(snap[bug_id])), bug_id
        assert seen == "2026-01-01T00:00:00.000000Z"
    assert list(outbox_rows[0]) == [0]
    assert any(json.loads(triage)[1] == 1 for _, triage, _ in rows)  # a known bug among them


async def test_a_nuke_cancels_live_changes_and_keeps_the_audit(
    outbox_mirror: OutboxMirror, tmp_path: Path
) -> None:
    bug_id = outbox_mirror.bug_ids("forwarded")[0]
    [change] = await outbox_mirror.mirror.outbox.enqueue(
        [ChangeRequest(bug_id, "accept")], requested_by="local", client="cli", strategy="manual"
    )
    await outbox_mirror.mirror.empty()
    cancelled = await outbox_mirror.mirror.outbox.get(change.id)
    assert cancelled.state == "cancelled"
    assert cancelled.bug_now is None  # the bug is gone with the rest
    assert [(e.kind, e.actor) for e in cancelled.events] == [
        ("created", "local"),
        ("cancelled", "nuke"),
    ]


async def test_a_bug_write_reads_no_change_while_nothing_waits(
    outbox_mirror: OutboxMirror, statements: list[Statement]
) -> None:
    bug_ids = outbox_mirror.bug_ids("forwarded")[:3]
    [change] = await outbox_mirror.mirror.outbox.enqueue(
        [ChangeRequest(bug_ids[0], "accept")], requested_by="local", client="cli", strategy="manual"
    )
    await outbox_mirror.mirror.outbox.cancel(change.id, by="local")
    bugs = [Bug.from_wire(outbox_mirror.raw(i, status="accepted")) for i in bug_ids]
    statements.clear()
    async with outbox_mirror.mirror.db.transaction() as conn:
        await write_bugs(conn, bugs, outbox_mirror.stamp())
    touching = [sql for sql, _ in statements if "changes" in sql]
    assert len(touching) == 1  # the one probe
    assert touching[0].startswith("SELECT EXISTS")


async def test_the_probe_and_the_lookup_use_indexes(outbox_mirror: OutboxMirror) -> None:
    async def plan(sql: str, *params: Any) -> str:
        async with outbox_mirror.mirror.db.reader() as conn:
            rows = await conn.execute_fetchall(f"EXPLAIN QUERY PLAN {sql}", params)
        return " | ".join(str(row[3]) for row in rows)

    probe = await plan(
        "SELECT EXISTS (SELECT 1 FROM changes WHERE state IN ('pending', 'conflict'))"
    )
    assert "USING COVERING INDEX changes_by_state" in probe
    lookup = await plan(
        "SELECT * FROM changes c WHERE c.state IN ('pending', 'sending', 'conflict') "
        "AND c.bug_id IN (SELECT value FROM json_each(?))",
        "[1, 2]",
    )
    # Either index reads the live changes only (few by design), never the whole table.
    assert "SEARCH c USING INDEX changes_" in lookup
    assert "SCAN c" not in lookup


async def test_the_mirror_facade_reaches_the_outbox(tmp_path: Path) -> None:
    mirror = await Mirror.open(load_settings(mirror_home=tmp_path / "home"), None)
    try:
        assert (await mirror.outbox.summary()).by_state["pending"] == 0
    finally:
        await mirror.close()
