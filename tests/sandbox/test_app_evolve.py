"""The app evolving the account while it serves: every N requests (changes land in the
middle of a listing) and on a timer."""

from __future__ import annotations

from testio_mirror.sandbox import SandboxKnobs, SandboxWorld
from tests.conftest import SMALL, SandboxFactory
from tests.helpers.polling import wait_for
from tests.helpers.sandbox_http import listing, sandbox_client

SECTIONED = 101


def test_evolve_every_requests(make_sandbox: SandboxFactory) -> None:
    server = make_sandbox(knobs=SandboxKnobs(evolve_every_requests=2))
    with sandbox_client(server) as api:
        for _ in range(10):
            api.get("products/999")  # every API request counts, a 404 too
    assert wait_for(lambda: len(server.requests) == 10)
    assert wait_for(lambda: server.world.counts()["evolve_steps"] == 5)
    assert server.world.counts()["evolve_steps"] == 5


def test_changes_land_in_the_middle_of_a_listing(make_sandbox: SandboxFactory) -> None:
    server = make_sandbox(knobs=SandboxKnobs(evolve_every_requests=2))
    pages: list[list[int]] = []
    with sandbox_client(server) as api:
        while page := listing(api, SECTIONED, page=len(pages) + 1, per_page=10):
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
