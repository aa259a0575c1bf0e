"""Evolution of the sandbox account: the order open tests advance in, and what
``SandboxWorld.evolve`` reports (every id one or more steps touched)."""

from __future__ import annotations

from dataclasses import dataclass, field

from testio_mirror.sandbox.dataset import JSON

NEXT_STATUS = {
    "initialized": "waiting",
    "waiting": "running",
    "running": "locked",
    "locked": "customer_finalized",
    "customer_finalized": "archived",
}


@dataclass
class EvolveReport:
    """What one or more evolve steps changed, by id."""

    steps: int = 0
    added_tests: list[int] = field(default_factory=list)
    status_changes: list[tuple[int, str, str]] = field(default_factory=list)
    moved_tests: list[int] = field(default_factory=list)
    new_bugs: list[int] = field(default_factory=list)
    triaged_bugs: list[int] = field(default_factory=list)
    removed_tests: list[int] = field(default_factory=list)

    def as_json(self) -> JSON:
        return {
            "steps": self.steps,
            "added_tests": self.added_tests,
            "status_changes": [
                {"test_id": t, "from": old, "to": new} for t, old, new in self.status_changes
            ],
            "moved_tests": self.moved_tests,
            "new_bugs": self.new_bugs,
            "triaged_bugs": self.triaged_bugs,
            "removed_tests": self.removed_tests,
        }
