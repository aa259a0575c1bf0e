"""The sandbox's bugs: generated from each test's context when asked for, kept for answering again,
and held apart once anything about them changed.

Generating a test's bugs is deterministic (the seed and the test's ``BugContext``), so most of
the account's bugs need not exist until someone lists them. A triage, a new bug or a moved test
makes that test's list live state: from then on it is kept in the overlay, never generated again.
"""

from __future__ import annotations

from collections import OrderedDict

from testio_mirror.sandbox.dataset import (
    EVOLVED_BUG_ID_BASE,
    JSON,
    BugContext,
    DatasetSpec,
    generate_bugs,
    owner_of_generated_bug,
)

# Generated bug lists kept for answering again, least recently used dropped first: copying a kept
# bug is several times cheaper than generating it, and the sandbox shares the machine with the
# client a benchmark measures. Dataset S (10,000 bugs) fits; M (300,000) is generated on demand.
BUG_CACHE_LIMIT = 12_000


class SandboxBugs:
    """Every test's bugs, by test id. Not thread-safe: the world's lock guards it."""

    def __init__(self, spec: DatasetSpec, contexts: dict[int, BugContext]) -> None:
        self._spec = spec
        self._contexts = contexts
        self._overlay: dict[int, list[JSON]] = {}
        self._kept: OrderedDict[int, tuple[BugContext, list[JSON]]] = OrderedDict()
        self._kept_bugs = 0
        self._evolved_owner: dict[int, int] = {}
        self._next_id = EVOLVED_BUG_ID_BASE + 1

    def context(self, test_id: int) -> BugContext:
        return self._contexts[test_id]

    def set_context(self, test_id: int, context: BugContext) -> None:
        self._contexts[test_id] = context

    def of(self, test_id: int) -> list[JSON]:
        """The test's bugs, live: callers copy before handing them out or changing them."""
        overlay = self._overlay.get(test_id)
        if overlay is not None:
            return overlay
        context = self._contexts[test_id]
        kept = self._kept.get(test_id)
        if kept is not None and kept[0] is context:
            self._kept.move_to_end(test_id)
            return kept[1]
        bugs = generate_bugs(self._spec, context)
        if kept is not None:
            self._kept_bugs -= len(kept[1])
        self._kept[test_id] = (context, bugs)
        self._kept_bugs += len(bugs)
        while self._kept_bugs > BUG_CACHE_LIMIT and len(self._kept) > 1:
            _, (_, dropped) = self._kept.popitem(last=False)
            self._kept_bugs -= len(dropped)
        return bugs

    def for_update(self, test_id: int) -> list[JSON]:
        """The test's bugs as live state that may be changed in place."""
        if test_id not in self._overlay:
            self._overlay[test_id] = generate_bugs(self._spec, self._contexts[test_id])
        return self._overlay[test_id]

    def count(self, test_id: int) -> int:
        overlay = self._overlay.get(test_id)
        return len(overlay) if overlay is not None else self._contexts[test_id].bug_count

    def owner(self, bug_id: int) -> int | None:
        """The test a bug belongs to, if its id is one the account could hold."""
        owner = self._evolved_owner.get(bug_id)
        if owner is None:
            owner = owner_of_generated_bug(bug_id, self._spec.bugs_per_test)
        return owner

    def new_id(self) -> int:
        bug_id = self._next_id
        self._next_id += 1
        return bug_id

    def add(self, test_id: int, bug: JSON) -> None:
        self.for_update(test_id).append(bug)
        self._evolved_owner[int(bug["id"])] = test_id

    def drop(self, test_id: int) -> None:
        self._overlay.pop(test_id, None)

    def warm(self, test_ids: list[int]) -> int:
        """Generate every listed test's bugs now when they all fit in what is kept, so the first
        listing costs what later ones do. Returns how many bugs were generated."""
        total = sum(self.count(test_id) for test_id in test_ids)
        if total > BUG_CACHE_LIMIT:
            return 0
        for test_id in test_ids:
            self.of(test_id)
        return total
