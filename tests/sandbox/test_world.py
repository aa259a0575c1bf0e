"""The sandbox account over time: evolve steps, the world's edit methods, snapshots vs the API."""

from __future__ import annotations

import httpx
import pytest

from testio_mirror.sandbox import (
    DatasetSpec,
    EvolveReport,
    NotFoundError,
    SandboxServer,
    SandboxWorld,
)
from tests.conftest import SMALL
from tests.helpers.sandbox_http import listing, ok

SECTIONED, PLAIN = 101, 102


def test_evolve_changes_are_served(sandbox: SandboxServer, api: httpx.Client) -> None:
    world = sandbox.world
    before = world.snapshot()
    report = world.evolve()
    after = world.snapshot()
    assert isinstance(report, EvolveReport)
    assert report.steps == 1
    assert world.counts()["evolve_steps"] == 1
    assert report.added_tests
    assert report.status_changes
    assert report.new_bugs
    assert report.triaged_bugs
    assert len(report.removed_tests) == 1
    alive = set(after["tests"])

    for test_id in set(report.added_tests) & alive:
        product_id = after["tests"][test_id]["product"]["id"]
        assert listing(api, product_id)[0] == test_id
    for test_id, old, new in report.status_changes:
        assert before["tests"][test_id]["status"] == old
        if test_id in alive:
            test = ok(api.get(f"exploratory_tests/{test_id}"), "exploratory_test")
            assert test["status"] == new
    for bug_id in set(report.new_bugs) & set(after["bugs"]):
        test_id = after["bugs"][bug_id]["test"]["id"]
        bugs = ok(api.get("bugs", params={"filter_test_cycle_ids": test_id}), "bugs")
        assert bug_id in {b["id"] for b in bugs}
    for bug_id in set(report.triaged_bugs) & set(after["bugs"]):
        was = before["bugs"].get(bug_id, {"status": "forwarded"})["status"]
        assert was == "forwarded"
        assert ok(api.get(f"bugs/{bug_id}"), "bug")["status"] in ("accepted", "rejected")

    for test_id in report.removed_tests:
        product_id = before["tests"][test_id]["product"]["id"]
        assert api.get(f"exploratory_tests/{test_id}").status_code == 404
        assert test_id not in listing(api, product_id, per_page=100)
        assert ok(api.get("bugs", params={"filter_test_cycle_ids": test_id}), "bugs") == []
        old_bugs = [b for b in before["bugs"].values() if b["test"]["id"] == test_id]
        assert len(old_bugs) == SMALL.bugs_per_test
        for bug in old_bugs:
            assert api.get(f"bugs/{bug['id']}").status_code == 404


def test_evolve_is_deterministic() -> None:
    spec = DatasetSpec(seed=5, products=2, tests_per_product=20, bugs_per_test=2)
    stepwise, batched = SandboxWorld(spec), SandboxWorld(spec)
    reports = [stepwise.evolve() for _ in range(3)]
    together = batched.evolve(3)
    assert stepwise.snapshot() == batched.snapshot()
    assert [t for r in reports for t in r.added_tests] == together.added_tests
    assert [b for r in reports for b in r.new_bugs] == together.new_bugs
    assert stepwise.counts() == batched.counts()

    other = SandboxWorld(DatasetSpec(seed=6, products=2, tests_per_product=20, bugs_per_test=2))
    other.evolve(3)
    assert other.snapshot() != stepwise.snapshot()


def test_add_test_heads_the_listing(sandbox: SandboxServer, api: httpx.Client) -> None:
    head = listing(api, PLAIN)
    test_id = sandbox.world.add_test(PLAIN)
    assert test_id > max(sandbox.world.snapshot()["tests"].keys() - {test_id})
    assert listing(api, PLAIN) == [test_id, *head[:24]]
    test = ok(api.get(f"exploratory_tests/{test_id}"), "exploratory_test")
    assert (test["status"], test["product"]["id"]) == ("running", PLAIN)
    assert ok(api.get("bugs", params={"filter_test_cycle_ids": test_id}), "bugs") == []


def test_extend_test_moves_it_up_the_listing(sandbox: SandboxServer, api: httpx.Client) -> None:
    order = listing(api, PLAIN, per_page=100)
    test_id = order[10]
    sandbox.world.extend_test(test_id, days=5)
    moved = listing(api, PLAIN, per_page=100)
    assert 0 < moved.index(test_id) < 10
    assert [t for t in moved if t != test_id] == [t for t in order if t != test_id]
    served = ok(api.get(f"exploratory_tests/{test_id}"), "exploratory_test")
    assert served["end_at"] == sandbox.world.test(test_id)["end_at"] != ""
    sandbox.world.extend_test(test_id, days=365)
    assert listing(api, PLAIN)[0] == test_id


def test_move_test_refiles_the_test_and_its_bugs(sandbox: SandboxServer, api: httpx.Client) -> None:
    test_id = listing(api, SECTIONED)[3]
    bug_ids = {b["id"] for b in sandbox.world.bugs(test_ids=[test_id])}
    assert len(bug_ids) == SMALL.bugs_per_test
    sandbox.world.move_test(test_id, PLAIN)

    test = ok(api.get(f"exploratory_tests/{test_id}"), "exploratory_test")
    assert test["product"] == {"id": PLAIN, "name": sandbox.world.product(PLAIN)["name"]}
    assert test["section"] is None
    assert test_id in listing(api, PLAIN, per_page=100)
    assert test_id not in listing(api, SECTIONED, per_page=100)
    bugs = ok(api.get("bugs", params={"filter_test_cycle_ids": test_id}), "bugs")
    assert {b["id"] for b in bugs} == bug_ids
    assert {b["product"]["id"] for b in bugs} == {PLAIN}
    for bug_id in bug_ids:
        assert ok(api.get(f"bugs/{bug_id}"), "bug")["product"]["id"] == PLAIN
    plain_bugs = ok(api.get("bugs", params={"filter_product_ids": PLAIN}), "bugs")
    assert bug_ids <= {b["id"] for b in plain_bugs}
    sectioned_bugs = ok(api.get("bugs", params={"filter_product_ids": SECTIONED}), "bugs")
    assert not bug_ids & {b["id"] for b in sectioned_bugs}


def test_add_bug_is_a_new_forwarded_bug(sandbox: SandboxServer, api: httpx.Client) -> None:
    test_id = listing(api, PLAIN)[0]
    bug_id = sandbox.world.add_bug(test_id)
    bug = ok(api.get(f"bugs/{bug_id}"), "bug")
    assert bug["id"] == bug_id > 900_000_000
    assert (bug["status"], bug["auto_accepted"], bug["comments"]) == ("forwarded", False, [])
    assert bug["test"]["id"] == test_id
    assert bug["product"]["id"] == PLAIN
    listed = ok(api.get("bugs", params={"filter_test_cycle_ids": test_id}), "bugs")
    assert len(listed) == SMALL.bugs_per_test + 1
    assert listed[-1] == bug


def test_remove_test_of_an_unknown_id_raises(sandbox: SandboxServer) -> None:
    with pytest.raises(NotFoundError, match="999999"):
        sandbox.world.remove_test(999_999)
    assert sandbox.world.counts()["tests"] == 90


def test_snapshot_equals_what_the_api_serves(sandbox: SandboxServer, api: httpx.Client) -> None:
    sandbox.world.evolve(2)  # overlays: triaged, new and moved bugs, new and removed tests
    truth = sandbox.world.snapshot()
    test_ids = truth["product_tests"][SECTIONED]
    assert {t for t, test in truth["tests"].items() if test["product"]["id"] == SECTIONED} == set(
        test_ids
    )
    assert listing(api, SECTIONED, per_page=100) == test_ids
    for test_id in test_ids:
        served = ok(api.get(f"exploratory_tests/{test_id}"), "exploratory_test")
        assert served == truth["tests"][test_id]
    bug_ids = sorted(truth["bugs"])
    for bug_id in [*bug_ids[:: max(len(bug_ids) // 8, 1)], bug_ids[-1]]:
        assert ok(api.get(f"bugs/{bug_id}"), "bug") == truth["bugs"][bug_id]
    for product_id in truth["products"]:
        served_bugs = ok(api.get("bugs", params={"filter_product_ids": product_id}), "bugs")
        expected = {b for b, bug in truth["bugs"].items() if bug["product"]["id"] == product_id}
        assert {b["id"] for b in served_bugs} == expected


def test_snapshot_is_a_copy_of_the_world(sandbox: SandboxServer, api: httpx.Client) -> None:
    # SandboxWorld promises copies, never live objects: editing a snapshot changes nothing.
    snapshot = sandbox.world.snapshot()
    snapshot["tests"].clear()
    snapshot["products"][PLAIN]["name"] = "edited"
    snapshot["product_tests"][SECTIONED].clear()
    snapshot["product_tests"][PLAIN].reverse()
    assert sandbox.world.product(PLAIN)["name"] != "edited"
    assert sandbox.world.counts()["tests"] == 90
    fresh = SandboxWorld(SMALL).snapshot()
    assert sandbox.world.snapshot()["product_tests"] == fresh["product_tests"]
    assert len(listing(api, SECTIONED)) == 25
    assert listing(api, PLAIN) == fresh["product_tests"][PLAIN][:25]
