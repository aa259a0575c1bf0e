"""The account's reject reasons as a sync mirrors them: exactly the ones TestIO answers now, so a
reason the account dropped is refused before a rejection is stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from testio_mirror.app import open_app
from testio_mirror.sandbox import SandboxServer
from testio_mirror.store.outbox_records import ChangeRequest
from testio_mirror.sync.models import SyncDirection, SyncOptions
from testio_mirror.sync.triage_desk import RejectReasonError, TriageDesk
from tests.helpers.settings import make_settings
from tests.helpers.sync_runs import ALL_PHASES, run_sync


async def test_a_reason_the_account_dropped_leaves_the_mirror_and_is_refused(
    sandbox: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    everything = sandbox.world.reject_reasons()
    dropped, kept = everything[0], everything[1:]
    down = SyncOptions(direction=SyncDirection.DOWN, force_refresh=True)
    async with open_app(make_settings(sandbox, tmp_path / "home")) as app:
        await run_sync(app, phases=ALL_PHASES, options=down)
        before = [r.key for r in await app.mirror.outbox.reject_reasons()]
        monkeypatch.setattr(sandbox.world, "reject_reasons", lambda: [dict(r) for r in kept])
        await run_sync(app, phases=ALL_PHASES, options=down)
        after = [r.key for r in await app.mirror.outbox.reject_reasons()]
        desk = TriageDesk(app.mirror, app.client, app.sync.pusher, online=True)
        bug_id = next(iter(sandbox.world.snapshot()["bugs"]))
        with pytest.raises(RejectReasonError) as refused:
            await desk.plan([ChangeRequest(bug_id, "reject", reason=dropped["key"])])
    assert sorted(before) == sorted(r["key"] for r in everything)
    assert sorted(after) == sorted(r["key"] for r in kept)
    assert dropped["key"] not in refused.value.valid
