"""Outbox and a real sync against the sandbox over HTTP: a bug another user triaged in TestIO
while a change of ours waits is a conflict the sync records (parked for manual, noted for the
other strategies), and the sync's bug writes leave other changes alone."""

from __future__ import annotations

from pathlib import Path

from testio_mirror.app import open_app
from testio_mirror.sandbox import SandboxServer
from testio_mirror.store.outbox_records import ChangeRequest
from testio_mirror.sync.models import SyncDirection, SyncOptions
from testio_mirror.triage import TriageState
from tests.helpers.settings import make_settings
from tests.helpers.sync_runs import run_sync


async def test_a_sync_records_conflicts_with_pending_changes(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    async with open_app(make_settings(sandbox, tmp_path / "home")) as app:
        await run_sync(app)
        forwarded = sorted(
            bug["id"]
            for bug in sandbox.world.snapshot()["bugs"].values()
            if bug["status"] == "forwarded"
        )
        manual_bug, latest_bug, untouched_bug = forwarded[:3]
        outbox = app.mirror.outbox
        [manual] = await outbox.enqueue(
            [ChangeRequest(manual_bug, "accept")],
            requested_by="ana",
            client="cli",
            strategy="manual",
        )
        [latest, untouched] = await outbox.enqueue(
            [ChangeRequest(latest_bug, "accept"), ChangeRequest(untouched_bug, "accept")],
            requested_by="ana",
            client="cli",
            strategy="latest",
        )
        reason = sandbox.world.reject_reasons()[0]["key"]
        for bug_id in (manual_bug, latest_bug):
            sandbox.world.triage(bug_id, "reject", reason=reason, comment="another user")  # type: ignore[arg-type]
        await run_sync(app, options=SyncOptions(force_refresh=True, direction=SyncDirection.DOWN))

        parked = await outbox.get(manual.id)
        assert parked.state == "conflict"
        assert parked.server_side is not None
        assert parked.server_side.status == "rejected"
        noted = await outbox.get(latest.id)
        assert (noted.state, noted.events[-1].kind, noted.events[-1].actor) == (
            "pending",
            "conflict",
            "sync",
        )
        # ``latest`` compares the change's time with when the mirror first saw TestIO's state.
        assert noted.bug_triage_seen_at is not None
        assert noted.bug_triage_seen_at > noted.created_at
        calm = await outbox.get(untouched.id)
        assert (calm.state, calm.server_side) == ("pending", None)
        assert calm.bug_now == TriageState.of_bug(sandbox.world.bug(untouched_bug))
        summary = await outbox.summary()
        assert summary.conflicts_detected == {"manual": 1, "latest": 1}
