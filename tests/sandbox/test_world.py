"""The sandbox account over time: evolve steps, the world's edit methods, snapshots vs the API."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from testio_mirror.sandbox import (
    API_PREFIX,
    DatasetSpec,
    EvolveReport,
    NotFoundError,
    SandboxKnobs,
    SandboxServer,
    SandboxWorld,
)
from tests.conftest import SMALL, SandboxFactory
from tests.helpers.polling import wait_for

SECTIONED, PLAIN = 101, 102


def _client(server: SandboxServer, admin: bool = False) -> httpx.Client:
    base = server.base_url
    if admin:
        base = base.removesuffix(API_PREFIX) + "/_sandbox"
    return httpx.Client(base_url=base + "/", headers=server.auth_headers, timeout=10.0)


def _ok(response: httpx.Response, key: str) -> Any:
    assert response.status_code == 200, response.text
    return response.json()[key]


def _listing(api: httpx.Client, product_id: int, page: int = 1, per_page: int = 25) -> list[int]:
    params = {"page": page, "per_page": per_page}
    tests = _ok(
        api.get(f"products/{product_id}/exploratory_tests", params=params), "exploratory_tests"
    )
    return [t["id"] for t in tests]


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
        assert _listing(api, product_id)[0] == test_id
    for test_id, old, new in report.status_changes:
        assert before["tests"][test_id]["status"] == old
        if test_id in alive:
            test = _ok(api.get(f"exploratory_tests/{test_id}"), "exploratory_test")
            assert test["status"] == new
    for bug_id in set(report.new_bugs) & set(after["bugs"]):
        test_id = after["bugs"][bug_id]["test"]["id"]
        bugs = _ok(api.get("bugs", params={"filter_test_cycle_ids": test_id}), "bugs")
        assert bug_id in {b["id"] for b in bugs}
    for bug_id in set(report.triaged_bugs) & set(after["bugs"]):
        was = before["bugs"].get(bug_id, {"status": "forwarded"})["status"]
        assert was == "forwarded"
        assert _ok(api.get(f"bugs/{bug_id}"), "bug")["status"] in ("accepted", "rejected")

    for test_id in report.removed_tests:
        product_id = before["tests"][test_id]["product"]["id"]
        assert api.get(f"exploratory_tests/{test_id}").status_code == 404
        assert test_id not in _listing(api, product_id, per_page=100)
        assert _ok(api.get("bugs", params={"filter_test_cycle_ids": test_id}), "bugs") == []
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
    head = _listing(api, PLAIN)
    test_id = sandbox.world.add_test(PLAIN)
    assert test_id > max(sandbox.world.snapshot()["tests"].keys() - {test_id})
    assert _listing(api, PLAIN) == [test_id, *head[:24]]
    test = _ok(api.get(f"exploratory_tests/{test_id}"), "exploratory_test")
    assert (test["status"], test["product"]["id"]) == ("running", PLAIN)
    assert _ok(api.get("bugs", params={"filter_test_cycle_ids": test_id}), "bugs") == []


def test_extend_test_moves_it_up_the_listing(sandbox: SandboxServer, api: httpx.Client) -> None:
    order = _listing(api, PLAIN, per_page=100)
    test_id = order[10]
    sandbox.world.extend_test(test_id, days=5)
    moved = _listing(api, PLAIN, per_page=100)
    assert 0 < moved.index(test_id) < 10
    assert [t for t in moved if t != test_id] == [t for t in order if t != test_id]
    served = _ok(api.get(f"exploratory_tests/{test_id}"), "exploratory_test")
    assert served["end_at"] == sandbox.world.test(test_id)["end_at"] != ""
    sandbox.world.extend_test(test_id, days=365)
    assert _listing(api, PLAIN)[0] == test_id


def test_move_test_refiles_the_test_and_its_bugs(sandbox: SandboxServer, api: httpx.Client) -> None:
    test_id = _listing(api, SECTIONED)[3]
    bug_ids = {b["id"] for b in sandbox.world.bugs(test_ids=[test_id])}
    assert len(bug_ids) == SMALL.bugs_per_test
    sandbox.world.move_test(test_id, PLAIN)

    test = _ok(api.get(f"exploratory_tests/{test_id}"), "exploratory_test")
    assert test["product"] == {"id": PLAIN, "name": sandbox.world.product(PLAIN)["name"]}
    assert test["section"] is None
    assert test_id in _listing(api, PLAIN, per_page=100)
    assert test_id not in _listing(api, SECTIONED, per_page=100)
    bugs = _ok(api.get("bugs", params={"filter_test_cycle_ids": test_id}), "bugs")
    assert {b["id"] for b in bugs} == bug_ids
    assert {b["product"]["id"] for b in bugs} == {PLAIN}
    for bug_id in bug_ids:
        assert _ok(api.get(f"bugs/{bug_id}"), "bug")["product"]["id"] == PLAIN
    plain_bugs = _ok(api.get("bugs", params={"filter_product_ids": PLAIN}), "bugs")
    assert bug_ids <= {b["id"] for b in plain_bugs}
    sectioned_bugs = _ok(api.get("bugs", params={"filter_product_ids": SECTIONED}), "bugs")
    assert not bug_ids & {b["id"] for b in sectioned_bugs}


def test_add_bug_is_a_new_forwarded_bug(sandbox: SandboxServer, api: httpx.Client) -> None:
    test_id = _listing(api, PLAIN)[0]
    bug_id = sandbox.world.add_bug(test_id)
    bug = _ok(api.get(f"bugs/{bug_id}"), "bug")
    assert bug["id"] == bug_id > 900_000_000
    assert (bug["status"], bug["auto_accepted"], bug["comments"]) == ("forwarded", False, [])
    assert bug["test"]["id"] == test_id
    assert bug["product"]["id"] == PLAIN
    listed = _ok(api.get("bugs", params={"filter_test_cycle_ids": test_id}), "bugs")
    assert len(listed) == SMALL.bugs_per_test + 1
    assert listed[-1] == bug


def test_remove_test_of_an_unknown_id_raises(sandbox: SandboxServer) -> None:
    with pytest.raises(NotFoundError, match="999999"):
        sandbox.world.remove_test(999_999)
    assert sandbox.world.counts()["tests"] == 90


def test_evolve_every_requests(make_sandbox: SandboxFactory) -> None:
    server = make_sandbox(knobs=SandboxKnobs(evolve_every_requests=2))
    with _client(server) as api:
        for _ in range(10):
            api.get("products/999")  # every API request counts, a 404 too
    assert wait_for(lambda: len(server.requests) == 10)
    assert wait_for(lambda: server.world.counts()["evolve_steps"] == 5)
    assert server.world.counts()["evolve_steps"] == 5


def test_changes_land_in_the_middle_of_a_listing(make_sandbox: SandboxFactory) -> None:
    server = make_sandbox(knobs=SandboxKnobs(evolve_every_requests=2))
    pages: list[list[int]] = []
    with _client(server) as api:
        while page := _listing(api, SECTIONED, page=len(pages) + 1, per_page=10):
            pages.append(page)
    # The same requests against a fresh world of the same seed, evolving after every second.
    replay, expected = SandboxWorld(SMALL), list[list[int]]()
    for number in range(1, len(pages) + 2):
        expected.append([t["id"] for t in replay.tests_page(SECTIONED, number, 10)])
        if number % 2 == 0:
            replay.evolve()
    assert [*pages, []] == expected
    assert server.world.snapshot() == replay.snapshot()

    seen = [test_id for page in pages for test_id in page]
    final = server.world.snapshot()["product_tests"][SECTIONED]
    twice = {test_id for test_id in seen if seen.count(test_id) > 1}
    missed, stale = set(final) - set(seen), set(seen) - set(final)
    assert seen != final
    # With seed 3: a test shows up on pages 2 and 3 (its page shifted under the reader), the
    # tests added at the head after page 1 was read are never seen, a removed one was.
    assert twice
    assert missed
    assert stale
    assert server.world.counts()["evolve_steps"] == (len(pages) + 1) // 2


def test_evolve_on_a_timer(make_sandbox: SandboxFactory) -> None:
    server = make_sandbox(evolve_interval_seconds=0.05)
    assert wait_for(lambda: server.world.counts()["evolve_steps"] > 0)


def test_admin_evolve(sandbox: SandboxServer) -> None:
    with _client(sandbox, admin=True) as admin:
        evolved = _ok(admin.post("evolve", params={"steps": 2}), "evolved")
        assert sandbox.world.counts()["evolve_steps"] == 2
        assert evolved["steps"] == 2
        assert set(evolved) == {
            "steps",
            "added_tests",
            "status_changes",
            "moved_tests",
            "new_bugs",
            "triaged_bugs",
            "removed_tests",
        }
        assert len(evolved["removed_tests"]) == 2
        for change in evolved["status_changes"]:
            assert set(change) == {"test_id", "from", "to"}
        assert _ok(admin.post("evolve"), "evolved")["steps"] == 1
        assert sandbox.world.counts()["evolve_steps"] == 3
        assert admin.post("evolve", params={"steps": 0}).status_code == 422
        assert sandbox.world.counts()["evolve_steps"] == 3
    assert len(sandbox.requests) == 0


def test_admin_snapshot_matches_the_world(sandbox: SandboxServer) -> None:
    sandbox.world.evolve()
    with _client(sandbox, admin=True) as admin:
        served = _ok(admin.get("snapshot"), "snapshot")
    truth = sandbox.world.snapshot()
    counts = sandbox.world.counts()
    assert {"products", "tests", "bugs"} <= served.keys()
    for key in ("products", "tests", "bugs"):
        assert set(served[key]) == {str(k) for k in truth[key]}
        assert len(served[key]) == counts[key]
    assert served["tests"] == {str(k): v for k, v in truth["tests"].items()}
    assert served["product_tests"] == {str(k): v for k, v in truth["product_tests"].items()}
    sample = next(iter(truth["bugs"].values()))
    assert served["bugs"][str(sample["id"])] == sample


def test_snapshot_equals_what_the_api_serves(sandbox: SandboxServer, api: httpx.Client) -> None:
    sandbox.world.evolve(2)  # overlays: triaged, new and moved bugs, new and removed tests
    truth = sandbox.world.snapshot()
    test_ids = truth["product_tests"][SECTIONED]
    assert {t for t, test in truth["tests"].items() if test["product"]["id"] == SECTIONED} == set(
        test_ids
    )
    assert _listing(api, SECTIONED, per_page=100) == test_ids
    for test_id in test_ids:
        served = _ok(api.get(f"exploratory_tests/{test_id}"), "exploratory_test")
        assert served == truth["tests"][test_id]
    bug_ids = sorted(truth["bugs"])
    for bug_id in [*bug_ids[:: max(len(bug_ids) // 8, 1)], bug_ids[-1]]:
        assert _ok(api.get(f"bugs/{bug_id}"), "bug") == truth["bugs"][bug_id]
    for product_id in truth["products"]:
        served_bugs = _ok(api.get("bugs", params={"filter_product_ids": product_id}), "bugs")
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
    assert len(_listing(api, SECTIONED)) == 25
    assert _listing(api, PLAIN) == fresh["product_tests"][PLAIN][:25]
