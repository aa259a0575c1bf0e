"""Bugs the triage tests decide: forwarded ones that carry no triage flag yet."""

from __future__ import annotations

from testio_mirror.sandbox import SandboxServer


def forwarded(sandbox: SandboxServer, count: int) -> list[int]:
    """``count`` forwarded bugs of ``sandbox`` not known, fixed or exported, lowest ids first."""
    bugs = sandbox.world.snapshot()["bugs"].values()
    ids = sorted(
        b["id"]
        for b in bugs
        if b["status"] == "forwarded"
        and not b["known"]
        and not b.get("fixed_at")
        and not b.get("exported_at")
    )
    assert len(ids) >= count, f"the sandbox has {len(ids)} such bugs, {count} asked"
    return ids[:count]
