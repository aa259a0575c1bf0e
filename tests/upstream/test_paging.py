"""ExploratoryTestPager against fake listings: where it stops, caps, moving lists, the wiring;
and the verdicts that decide it, on their own."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import respx

from testio_mirror.upstream.errors import BadResponseError
from testio_mirror.upstream.models import SKIPPED_OBJECTS
from testio_mirror.upstream.paging import (
    ExploratoryTestPage,
    ExploratoryTestPager,
    ListingState,
    WindowRequest,
    judge_page,
    page_first_slot,
    window_request,
)
from tests.helpers.fake_upstream import make_client
from tests.helpers.polling import settle


class Listing:
    """A fake ``fetch(page, per_page)`` over ids newest first: honest, capped or ignoring paging."""

    def __init__(
        self,
        count: int,
        cap: int | None = None,
        ignore_paging: bool = False,
        ignore_page: bool = False,
    ) -> None:
        self.ids = list(range(count, 0, -1))
        self.cap = cap
        self.ignore_paging = ignore_paging  # every answer is the whole list
        self.ignore_page = ignore_page  # per_page is honoured, page is not
        self.calls: list[tuple[int, int]] = []

    async def __call__(self, page: int, per_page: int) -> list[Any]:
        self.calls.append((page, per_page))
        size = len(self.ids) if self.ignore_paging else min(per_page, self.cap or per_page)
        start = 0 if self.ignore_paging or self.ignore_page else (page - 1) * size
        return [{"id": i} for i in self.ids[start : start + size]]


class Scripted:
    """A fake ``fetch`` that answers fixed id lists page by page."""

    def __init__(self, pages: dict[int, list[int]]) -> None:
        self.pages = pages
        self.calls: list[int] = []

    async def __call__(self, page: int, per_page: int) -> list[Any]:
        self.calls.append(page)
        return [{"id": i, "title": f"t{i}"} for i in self.pages.get(page, [])]


async def pages_of(pager: ExploratoryTestPager) -> list[ExploratoryTestPage]:
    return [page async for page in pager]


def ids_of(pages: list[ExploratoryTestPage]) -> list[int]:
    return [test.id for page in pages for test in page.tests]


async def test_stops_on_an_empty_page_after_full_ones() -> None:
    listing = Listing(50)
    pages = await pages_of(ExploratoryTestPager(listing, 25))
    assert listing.calls == [(1, 25), (2, 25), (3, 25)]
    assert [(p.number, p.received, p.last) for p in pages] == [
        (1, 25, False),
        (2, 25, False),
        (3, 0, True),
    ]
    assert ids_of(pages) == list(range(50, 0, -1))


@pytest.mark.parametrize(("count", "fetches"), [(30, 2), (7, 1), (49, 2), (51, 3)])
async def test_stops_on_a_short_page_that_is_not_round(count: int, fetches: int) -> None:
    listing = Listing(count)
    pages = await pages_of(ExploratoryTestPager(listing, 25))
    assert len(listing.calls) == fetches
    assert pages[-1].last
    assert ids_of(pages) == list(range(count, 0, -1))


@pytest.mark.parametrize(("count", "size"), [(20, 25), (40, 50), (70, 80)])
async def test_a_short_round_page_is_not_trusted(count: int, size: int) -> None:
    listing = Listing(count)
    pager = ExploratoryTestPager(listing, size)
    pages = await pages_of(pager)
    assert len(listing.calls) == 2  # the round short page, then an empty one
    assert [p.last for p in pages] == [False, True]
    assert ids_of(pages) == list(range(count, 0, -1))
    assert pager.complete


@pytest.mark.parametrize(("count", "fetches"), [(95, 5), (100, 6), (20, 2)])
async def test_a_silent_cap_becomes_the_page_size(count: int, fetches: int) -> None:
    listing = Listing(count, cap=20)
    pages = await pages_of(ExploratoryTestPager(listing, 25))
    ids = ids_of(pages)
    assert sorted(ids) == list(range(1, count + 1))  # every test exactly once
    assert len(ids) == len(set(ids))
    assert listing.calls == [(n, 25) for n in range(1, fetches + 1)]


async def test_a_server_ignoring_paging_ends_after_one_fetch() -> None:
    listing = Listing(40, ignore_paging=True)
    pager = ExploratoryTestPager(listing, 25)
    pages = await pages_of(pager)
    assert listing.calls == [(1, 25)]
    assert [(p.received, p.last) for p in pages] == [(40, True)]
    assert len(ids_of(pages)) == 40
    assert pager.complete


async def test_tests_repeated_by_a_moving_list_come_once() -> None:
    fetch = Scripted({1: [20, 19, 18, 17, 16], 2: [16, 15, 14, 13, 12], 3: [12, 11]})
    pages = await pages_of(ExploratoryTestPager(fetch, 5))
    assert [[t.id for t in p.tests] for p in pages] == [
        [20, 19, 18, 17, 16],
        [15, 14, 13, 12],
        [11],
    ]
    assert [p.received for p in pages] == [5, 5, 2]
    assert pages[1].tests[0].title == "t15"


@pytest.mark.parametrize("count", [25, 20])
async def test_a_server_ignoring_paging_whose_list_fits_one_page_completes(count: int) -> None:
    listing = Listing(count, ignore_paging=True)
    pager = ExploratoryTestPager(listing, 25)
    pages = await pages_of(pager)
    assert ids_of(pages) == list(range(count, 0, -1))
    assert [(p.number, p.last) for p in pages] == [(1, False), (2, True)]
    assert pages[-1].tests == []
    assert listing.calls == [(1, 25), (2, 25), (1, count - 1)]  # the probe asks for fewer
    assert pager.complete


async def test_a_full_page_of_seen_tests_is_a_bad_response() -> None:
    listing = Listing(12, ignore_page=True)
    pager = ExploratoryTestPager(listing, 5)
    pages = aiter(pager)
    assert [t.id for t in (await anext(pages)).tests] == [12, 11, 10, 9, 8]
    with pytest.raises(BadResponseError, match="page 2"):
        await anext(pages)
    assert listing.calls == [(1, 5), (2, 5), (1, 4)]
    assert not pager.complete


async def test_complete_only_at_the_end() -> None:
    pager = ExploratoryTestPager(Listing(12), 5)
    pages = aiter(pager)
    lasts: list[bool] = []
    for _ in range(3):
        assert not pager.complete
        lasts.append((await anext(pages)).last)
    assert lasts == [False, False, True]
    assert pager.pages_fetched == 3
    with pytest.raises(StopAsyncIteration):
        await anext(pages)
    assert pager.complete
    assert pager.pages_fetched == 3  # nothing fetched past the end


async def test_start_page_is_honoured() -> None:
    listing = Listing(60)
    pages = await pages_of(ExploratoryTestPager(listing, 10, start_page=3))
    assert listing.calls[0] == (3, 10)
    assert [p.number for p in pages] == [3, 4, 5, 6, 7]
    assert ids_of(pages) == list(range(40, 0, -1))


@pytest.mark.parametrize(("size", "start"), [(0, 1), (-5, 1), (10, 0)])
async def test_bad_sizes_are_refused(size: int, start: int) -> None:
    with pytest.raises(ValueError, match=">= 1"):
        ExploratoryTestPager(Listing(1), size, start)


async def test_client_pages_ask_the_listing_endpoint(api: respx.MockRouter) -> None:
    route = api.get("products/5/exploratory_tests")
    route.side_effect = [
        respx.MockResponse(200, json={"exploratory_tests": [{"id": 3}, {"id": 2}]}),
        respx.MockResponse(200, json={"exploratory_tests": [{"id": 1}]}),
    ]
    async with make_client() as client:
        pages = await pages_of(client.test_pages(5, page_size=2))
        assert ids_of(pages) == [3, 2, 1]
        route.side_effect = [respx.MockResponse(200, json={"tests": []})]
        with pytest.raises(BadResponseError, match="exploratory_tests"):
            await pages_of(client.test_pages(5))
    asked = [dict(call.request.url.params) for call in route.calls]
    assert asked == [
        {"page": "1", "per_page": "2"},
        {"page": "2", "per_page": "2"},
        {"page": "1", "per_page": "25"},
    ]


class Shrinking(Listing):
    """A listing from which one test vanishes right after page ``after`` was read."""

    def __init__(self, count: int, vanishing: int, after: int) -> None:
        super().__init__(count)
        self.vanishing = vanishing
        self.after = after

    async def __call__(self, page: int, per_page: int) -> list[Any]:
        answer = await super().__call__(page, per_page)
        if (page, per_page) == (self.after, 10) and self.vanishing in self.ids:
            self.ids.remove(self.vanishing)
        return answer


async def _all_ids(pager: ExploratoryTestPager) -> list[int]:
    return [t.id for page in [p async for p in pager] for t in page.tests]


async def test_a_test_vanishing_mid_listing_skips_another_without_boundary_checks() -> None:
    fetch = Shrinking(35, vanishing=33, after=1)
    listed = await _all_ids(ExploratoryTestPager(fetch, page_size=10))
    # Test 25 slid from page 2 onto page 1, already read: it is never listed.
    assert 25 not in listed
    assert sorted(listed) == sorted(set(range(1, 36)) - {25})


async def test_boundary_checks_recover_the_test_that_slid_back() -> None:
    fetch = Shrinking(35, vanishing=33, after=1)
    pager = ExploratoryTestPager(fetch, page_size=10, check_boundaries=True)
    listed = await _all_ids(pager)
    assert sorted(listed) == list(range(1, 36))  # 33 was read before it vanished; 25 recovered
    assert len(listed) == len(set(listed))
    assert pager.slid_back == 1
    # 33 vanished from page 1 after it was read: page 1 is read again, and 33 is a suspect.
    assert pager.suspects == {33}
    assert fetch.calls.count((1, 10)) == 2
    assert not pager.unsettled


async def test_boundary_checks_cost_one_probe_per_boundary_when_nothing_moves() -> None:
    fetch = Listing(35)
    pager = ExploratoryTestPager(fetch, page_size=10, check_boundaries=True)
    assert sorted(await _all_ids(pager)) == list(range(1, 36))
    assert (pager.slid_back, pager.suspects, pager.unsettled) == (0, set(), [])
    probes = [call for call in fetch.calls if call[1] != 10]
    pages = [call for call in fetch.calls if call[1] == 10]
    assert len(probes) == len(pages) - 1  # boundaries 1|2, 2|3, 3|4 (page 4 is short)
    assert len(pages) == len(set(pages))  # no page read again


class Growing(Listing):
    """A listing that gains a test at its head right after page ``after`` was read."""

    def __init__(self, count: int, after: int) -> None:
        super().__init__(count)
        self.count = count
        self.after = after

    async def __call__(self, page: int, per_page: int) -> list[Any]:
        answer = await super().__call__(page, per_page)
        if (page, per_page) == (self.after, 10) and len(self.ids) == self.count:
            self.ids.insert(0, self.count + 1)
        return answer


async def test_a_test_arriving_mid_listing_repeats_one_and_skips_none() -> None:
    fetch = Growing(35, after=2)
    pager = ExploratoryTestPager(fetch, page_size=10, check_boundaries=True, window=3)
    listed = await _all_ids(pager)
    assert sorted(listed) == list(range(1, 36))  # 36 came after page 1 was read
    assert len(listed) == len(set(listed))  # the repeated test is handed out once
    assert (pager.slid_back, pager.suspects, pager.unsettled) == (0, set(), [])


class Restless(Listing):
    """A listing that loses its newest test after every answer once page 1 was read."""

    async def __call__(self, page: int, per_page: int) -> list[Any]:
        answer = await super().__call__(page, per_page)
        if len(self.calls) > 1 and len(self.ids) > 20:
            self.ids.pop(0)
        return answer


async def test_a_listing_that_keeps_moving_is_told_unsettled() -> None:
    pager = ExploratoryTestPager(Restless(120), page_size=10, check_boundaries=True, window=4)
    await _all_ids(pager)
    assert pager.unsettled  # boundaries that moved past both looks
    assert pager.complete  # the listing itself reached its end


async def test_a_caller_that_stops_early_settles_the_boundaries_left() -> None:
    fetch = Shrinking(60, vanishing=58, after=1)
    pager = ExploratoryTestPager(fetch, page_size=10, check_boundaries=True)
    listed: list[int] = []
    async for page in pager:
        listed += [t.id for t in page.tests]
        if page.number == 2:
            break  # an incremental listing that reached known tests
    late = await pager.settle()
    assert [t.id for t in late] == [50]  # slid from page 2 onto page 1 after page 1 was read
    assert 50 not in listed
    assert pager.suspects == {58}
    assert await pager.settle() == []  # nothing left to probe


# -- windows: several pages at once --------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "window", "asked"),
    [
        (95, 4, list(range(1, 14))),  # page 1, windows 2-5, 6-9, 10-13: the short page 10 ends it
        (100, 4, list(range(1, 14))),  # the empty page 11 ends it, inside the window 10-13
        (7, 4, [1]),  # a short first page: no window at all
        (50, 1, list(range(1, 7))),  # one page at a time, to the empty page 6
    ],
)
async def test_windows_read_the_same_tests_in_fewer_round_trips(
    count: int, window: int, asked: list[int]
) -> None:
    fetch = Listing(count)
    pages = await pages_of(ExploratoryTestPager(fetch, 10, window=window))
    assert ids_of(pages) == list(range(count, 0, -1))
    assert [p.number for p in pages] == sorted(p.number for p in pages)  # handed out in order
    assert pages[-1].last
    assert sum(p.last for p in pages) == 1  # pages past the end are dropped
    assert sorted(call[0] for call in fetch.calls) == asked


async def test_windows_come_whole_and_the_next_is_asked_for_while_one_is_stored() -> None:
    fetch = Listing(95)
    pager = ExploratoryTestPager(fetch, 10, window=4)
    seen: list[list[int]] = []
    asked_when_handed: list[int] = []
    async for window in pager.windows():
        seen.append([page.number for page in window])
        await settle()  # the caller stores the window: other tasks run meanwhile
        asked_when_handed.append(max(call[0] for call in fetch.calls))
        assert pager.complete == window[-1].last
    assert seen == [[1], [2, 3, 4, 5], [6, 7, 8, 9], [10]]
    # While the caller stores a window that does not end the listing, the next one is asked for;
    # the window holding the end (page 10, short) asks for nothing more.
    assert asked_when_handed == [5, 9, 13, 13]
    assert sorted(call[0] for call in fetch.calls) == list(range(1, 14))


async def test_a_caller_that_stops_early_cancels_the_window_asked_for_ahead() -> None:
    started: list[int] = []
    cancelled: list[int] = []

    async def fetch(page: int, per_page: int) -> list[Any]:
        started.append(page)
        if page > 1:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.append(page)
                raise
        return [{"id": 1000 - n} for n in range(per_page)]

    windows = ExploratoryTestPager(fetch, 10, window=3).windows()
    first = await anext(windows)
    assert [page.number for page in first] == [1]
    await settle()  # the window 2-4 is in flight
    assert sorted(started) == [1, 2, 3, 4]
    await windows.aclose()
    assert sorted(cancelled) == [2, 3, 4]


class FailingPage(Listing):
    """An honest listing whose page ``broken`` fails."""

    def __init__(self, count: int, broken: int) -> None:
        super().__init__(count)
        self.broken = broken

    async def __call__(self, page: int, per_page: int) -> list[Any]:
        if page == self.broken and per_page > 1:
            raise BadResponseError(f"page {page} is broken")
        return await super().__call__(page, per_page)


async def test_a_failed_page_in_a_window_keeps_the_pages_before_it() -> None:
    pager = ExploratoryTestPager(FailingPage(100, broken=4), 10, window=4)
    handed_out: list[int] = []

    async def read() -> None:
        async for page in pager:
            handed_out.append(page.number)

    with pytest.raises(BadResponseError, match="page 4"):
        await read()
    assert handed_out == [1, 2, 3]  # 5 was read too, but nothing after a gap is handed out
    assert not pager.complete


async def test_boundary_checks_guard_each_window() -> None:
    fetch = Shrinking(75, vanishing=73, after=1)
    pager = ExploratoryTestPager(fetch, page_size=10, check_boundaries=True, window=3)
    listed = await _all_ids(pager)
    assert sorted(listed) == list(range(1, 76))  # 65 slid back onto page 1 and was recovered
    assert pager.slid_back == 1
    probes = [call for call in fetch.calls if call[1] != 10]
    assert len(probes) == 7  # boundaries 1|2 to 7|8: page 8 is short and ends the listing


class ShrinkingMidWindow(Listing):
    """A listing from which test ``vanishing`` goes once page ``first`` was answered, before
    page ``then`` (of the same window) is."""

    def __init__(self, count: int, vanishing: int, first: int, then: int) -> None:
        super().__init__(count)
        self.vanishing, self.first, self.then = vanishing, first, then
        self.answered = asyncio.Event()

    async def __call__(self, page: int, per_page: int) -> list[Any]:
        if (page, per_page) == (self.then, 10):
            await self.answered.wait()
        answer = await super().__call__(page, per_page)
        if (page, per_page) == (self.first, 10) and not self.answered.is_set():
            self.ids.remove(self.vanishing)
            self.answered.set()
        return answer


@pytest.mark.parametrize("vanishing", [75, 55, 51])
async def test_a_test_vanishing_inside_a_window_is_found_and_the_skipped_one_collected(
    vanishing: int,
) -> None:
    # 80 tests, pages of 10: page 1 (80..71), then pages 2-5 at once; page 3 (60..51) is
    # answered, then a test on page 1 or 3 vanishes, then page 4 comes shifted: 50 slid onto
    # page 3. The vanished test was listed before it went: it is a suspect, asked for by id.
    fetch = ShrinkingMidWindow(80, vanishing, first=3, then=4)
    pager = ExploratoryTestPager(fetch, page_size=10, check_boundaries=True, window=4)
    listed = await _all_ids(pager)
    assert sorted(listed) == list(range(1, 81))  # 50 collected, nothing twice
    assert pager.slid_back == 1
    assert pager.suspects == {vanishing}
    assert not pager.unsettled


class FailingProbes(Listing):
    """An honest listing whose boundary probes (any ``per_page`` but 10) fail while ``failing``."""

    failing = True

    async def __call__(self, page: int, per_page: int) -> list[Any]:
        if self.failing and per_page != 10:
            raise BadResponseError("probe failed")
        return await super().__call__(page, per_page)


async def test_a_failed_last_round_of_probes_hands_out_the_pages_and_settle_raises() -> None:
    fetch = FailingProbes(35)
    pager = ExploratoryTestPager(fetch, 10, check_boundaries=True, window=4)
    handed: list[ExploratoryTestPage] = []
    async for window in pager.windows():
        handed += window
    assert ids_of(handed) == list(range(35, 0, -1))
    assert handed[-1].last
    with pytest.raises(BadResponseError, match="probe failed"):
        await pager.settle()
    fetch.failing = False
    assert await pager.settle() == []  # the boundaries stayed queued: probed now, all held
    assert len([call for call in fetch.calls if call[1] != 10]) == 3


class WithUnreadable(Shrinking):
    """``Shrinking``, with test ``odd`` sent with an id the mirror cannot store."""

    def __init__(self, count: int, vanishing: int, after: int, odd: int) -> None:
        super().__init__(count, vanishing, after)
        self.odd = odd

    async def __call__(self, page: int, per_page: int) -> list[Any]:
        answer = await super().__call__(page, per_page)
        return [{"id": 2**64 - 1} if item["id"] == self.odd else item for item in answer]


async def test_probes_and_pages_read_again_never_tell_an_unreadable_test_twice() -> None:
    # 33 vanishes after page 1 is read: page 1 is read again and boundary 1|2 probed, both
    # holding the unreadable test 27 again; it was told once, with page 1.
    fetch = WithUnreadable(35, vanishing=33, after=1, odd=27)
    told: list[str] = []
    token = SKIPPED_OBJECTS.set(told)
    try:
        listed = await _all_ids(ExploratoryTestPager(fetch, 10, check_boundaries=True))
    finally:
        SKIPPED_OBJECTS.reset(token)
    assert sorted(listed) == sorted(set(range(1, 36)) - {27})  # 25 collected
    assert fetch.calls.count((1, 10)) == 2
    assert len(told) == 1, told


@pytest.mark.parametrize("window", [0, -1])
async def test_a_window_below_one_is_refused(window: int) -> None:
    with pytest.raises(ValueError, match=">= 1"):
        ExploratoryTestPager(Listing(1), 10, window=window)


# -- verdicts: the decisions apart from the fetching --------------------------------------------

FRESH = ListingState(asked=25, expected=25)


@pytest.mark.parametrize(
    ("received", "fresh", "outcome"),
    [
        (26, 26, "end"),  # more than asked: paging ignored, this answer is the whole list
        (0, 0, "end"),
        (7, 7, "end"),  # short and not round
        (20, 20, "more"),  # short and round: maybe a silent cap
        (25, 25, "more"),
        (25, 0, "repeated"),  # full of tests listed before
    ],
)
def test_judge_page_outcomes(received: int, fresh: int, outcome: str) -> None:
    verdict = judge_page(FRESH, received, fresh)
    assert verdict.outcome == outcome
    assert verdict.last is (outcome == "end")


def test_a_round_short_page_becomes_the_expected_size() -> None:
    capped = judge_page(FRESH, 20, 20).state
    assert (capped.expected, capped.size_known, capped.saw_full) == (20, True, False)
    # A page of the cap is full from then on, and says nothing of the server's own limit.
    again = judge_page(capped, 20, 20)
    assert (again.outcome, again.state.saw_full, again.state.expected) == ("more", False, 20)
    assert judge_page(capped, 15, 15).outcome == "end"


def test_a_short_round_page_after_a_full_one_leaves_the_size_unknown() -> None:
    full = judge_page(FRESH, 25, 25).state
    assert (full.saw_full, full.size_known) == (True, True)
    shrunk = judge_page(full, 10, 10).state
    assert (shrunk.expected, shrunk.size_known) == (10, False)


def test_a_full_page_makes_the_size_known_again() -> None:
    resumed = ListingState.starting(asked=25, start_page=4)
    assert not resumed.size_known
    assert judge_page(resumed, 25, 25).state.size_known
    assert ListingState.starting(asked=25, start_page=1).size_known


def test_judge_page_leaves_its_state_alone() -> None:
    state = ListingState(asked=25, expected=25)
    judge_page(state, 20, 20)
    assert state == ListingState(asked=25, expected=25)


@pytest.mark.parametrize(
    ("first", "expected"),
    [
        (1, WindowRequest(1, 1)),  # the start page comes alone
        (2, WindowRequest(2, 4)),
        (6, WindowRequest(6, 4)),
    ],
)
def test_window_request(first: int, expected: WindowRequest) -> None:
    assert window_request(FRESH, first, start=1, window=4) == expected


def test_a_resumed_listing_starts_with_one_page() -> None:
    assert window_request(FRESH, 7, start=7, window=4) == WindowRequest(7, 1)


@pytest.mark.parametrize(
    ("state", "number", "received", "slot"),
    [
        (FRESH, 1, 25, 0),
        (FRESH, 3, 25, 50),
        (ListingState(25, 20), 6, 20, 100),  # a cap moves the slots
        (FRESH, 3, 20, None),  # a short page: no boundary after it
        (ListingState(25, 20, size_known=False), 6, 20, None),  # slots unknown (resumed)
    ],
)
def test_page_first_slot(state: ListingState, number: int, received: int, slot: int | None) -> None:
    assert page_first_slot(state, number, received) == slot
