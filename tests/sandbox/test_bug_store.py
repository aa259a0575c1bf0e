"""The sandbox keeps the bugs it generated: answers stay copies, bounded, and follow changes."""

from __future__ import annotations

import pytest

from testio_mirror.sandbox import SandboxWorld, bug_store
from testio_mirror.sandbox.dataset import BugContext, DatasetSpec

SPEC = DatasetSpec(seed=3, products=2, section_products=0, tests_per_product=20, bugs_per_test=3)


def _test_ids(world: SandboxWorld) -> list[int]:
    return sorted(t["id"] for pid in (101, 102) for t in world.tests_page(pid, 1, 100))


def test_answers_are_copies_of_the_kept_bugs() -> None:
    world = SandboxWorld(SPEC)
    test_id = _test_ids(world)[0]
    first = world.bugs(test_ids=[test_id])
    first[0]["title"] = "changed by a caller"
    first[0]["author"]["name"] = "nobody"
    again = world.bugs(test_ids=[test_id])
    assert again[0]["title"] != "changed by a caller"
    assert again[0]["author"]["name"] != "nobody"
    assert again == SandboxWorld(SPEC).bugs(test_ids=[test_id])  # as generated


def _count_generations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The test ids whose bugs were generated, in order, from now on."""
    calls: list[int] = []
    generate = bug_store.generate_bugs

    def counting(spec: DatasetSpec, context: BugContext) -> list[dict[str, object]]:
        calls.append(context.test_id)
        return generate(spec, context)

    monkeypatch.setattr(bug_store, "generate_bugs", counting)
    return calls


def test_warming_generates_every_bug_once_and_answers_do_not_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = SandboxWorld(SPEC)
    expected = {t: SandboxWorld(SPEC).bugs(test_ids=[t]) for t in _test_ids(world)}
    calls = _count_generations(monkeypatch)
    assert world.warm_bug_cache() == 40 * 3
    assert sorted(calls) == _test_ids(world)
    answers = {t: world.bugs(test_ids=[t]) for t in _test_ids(world)}
    assert answers == expected
    assert len(calls) == 40  # every answer came from what was kept


def test_the_cache_is_bounded_and_drops_the_least_recently_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bug_store, "BUG_CACHE_LIMIT", 9)  # three tests of three bugs
    world = SandboxWorld(SPEC)
    calls = _count_generations(monkeypatch)
    assert world.warm_bug_cache() == 0  # 120 bugs do not fit: nothing generated ahead
    assert calls == []
    first, second, third, fourth = _test_ids(world)[:4]
    for test_id in (first, second, third, first, fourth):
        world.bugs(test_ids=[test_id])
    assert calls == [first, second, third, fourth]  # first was answered from what was kept
    for test_id in (third, first, fourth):
        world.bugs(test_ids=[test_id])
    assert calls == [first, second, third, fourth]  # the three most recent are kept
    world.bugs(test_ids=[second])
    assert calls[-1] == second  # the least recently used was dropped: generated again


def test_bugs_that_change_are_answered_as_changed() -> None:
    world = SandboxWorld(SPEC)
    world.warm_bug_cache()
    before = world.snapshot()
    world.evolve(steps=3)
    after = world.snapshot()
    answered = {
        bug["id"]: bug for test_id in after["tests"] for bug in world.bugs(test_ids=[test_id])
    }
    assert answered == after["bugs"]
    assert after["bugs"] != before["bugs"]
