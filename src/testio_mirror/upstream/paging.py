"""Paging a product's exploratory tests: newest first, to the real end, each test once.

The listing has no total, no next link and an unknown largest ``per_page``; its end is a short or
empty page. Two traps shape this class:

- A server may cap ``per_page`` silently, so a "short" page can be a full one. A short page whose
  length is a round number (a multiple of ``ROUND_PAGE``) is therefore not trusted as the end: the
  next page is asked for, and if it holds tests the cap becomes the page size from then on.
- The list moves while it is paged. A test appearing at the head pushes the others down, so the
  same test can come twice: tests are de-duplicated by id, and each page yields only the ones not
  seen before. A test vanishing from a page already read pulls the others up, so one would be
  skipped: with ``check_boundaries`` the pager notices and reads the previous page again.

A server that ignores paging answers more than was asked for on the first page: that page is the
whole list. When the whole list happens to fit one page, the second page repeats the first; one
probe with a smaller ``per_page`` tells a server that ignores paging (it still answers everything:
the listing is complete) from one that is broken (``BadResponseError`` rather than loop forever).

What each page says (the end, a possible cap, a page of repeats) is decided by ``judge_page`` over a
small immutable ``ListingState``, which window to ask for next by ``window_request``, and whether a
test slid back by ``slid_onto_read_page``: pure functions; the pager fetches and applies them.

Example::

    pager = ExploratoryTestPager(fetch_page, page_size=25)
    async for page in pager:
        save(page.tests)        # new tests, newest first
    pager.complete              # True once the end was reached
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from typing import Any, Literal

from testio_mirror.upstream.errors import BadResponseError
from testio_mirror.upstream.models import ExploratoryTest, read_each

ROUND_PAGE = 10

FetchPage = Callable[[int, int], Awaitable[list[Any]]]
# The answers of a window's pages (each a list, or the error it raised), and the probe's answer.
_Window = tuple[list[list[Any] | BaseException], list[Any]]


@dataclass(frozen=True)
class ExploratoryTestPage:
    """One page of a product's tests, as far as the pager got."""

    number: int  # 1-based page number asked for
    tests: list[ExploratoryTest]  # tests not seen on an earlier page, in the server's order
    received: int  # how many items the server sent
    last: bool  # True when this page ends the listing


@dataclass(frozen=True)
class ListingState:
    """What the pager knows of the listing's pages between one page and the next."""

    asked: int  # the per_page asked for
    expected: int  # the length of a full page: ``asked``, or a silent cap found on the way
    saw_full: bool = False  # a page came back with all it asked for: the server does not cap
    # Does ``expected`` say where a page's last slot is? From page 1 on, or once a page came
    # back full. A listing resumed at a short page cannot tell, nor can one whose short page
    # after full ones made ``expected`` shrink (it is the end: a cap shows on every page).
    # A probe of a slot from a wrong size points into an earlier page, never read by this
    # pager when it resumed, so its test would look slid back and a page be read again.
    size_known: bool = True

    @classmethod
    def starting(cls, asked: int, start_page: int) -> ListingState:
        """The state before the first page, asked for ``asked`` per page from ``start_page``."""
        return cls(asked, asked, size_known=start_page == 1)


PageOutcome = Literal["more", "end", "repeated"]


@dataclass(frozen=True)
class PageVerdict:
    """What one page says of the listing, and the state after it.

    ``outcome``: ``more``, the listing goes on; ``end``, this page ends it; ``repeated``, a full
    page of tests all listed before: the server ignores paging altogether (what was seen is the
    whole list) or paging is broken, which only one more request can tell.
    """

    outcome: PageOutcome
    state: ListingState

    @property
    def last(self) -> bool:
        return self.outcome == "end"


def judge_page(state: ListingState, received: int, fresh: int) -> PageVerdict:
    """The verdict on a page of ``received`` items, ``fresh`` of them not listed before."""
    if received > state.asked:
        return PageVerdict("end", state)  # paging ignored: this one answer is the whole list
    if received == 0:
        return PageVerdict("end", state)
    if received < state.expected:
        if received % ROUND_PAGE:
            return PageVerdict("end", state)
        # Maybe a silent cap, maybe the end: the next page tells.
        capped = state.size_known and not state.saw_full
        return PageVerdict("more", replace(state, expected=received, size_known=capped))
    saw_full = state.saw_full or received == state.asked
    full = replace(state, size_known=True, saw_full=saw_full)
    return PageVerdict("more" if fresh else "repeated", full)


@dataclass(frozen=True)
class WindowRequest:
    """The pages to ask for at once, and the slot to probe with them."""

    first: int  # the first page of the window
    count: int  # how many pages
    probe_slot: int | None  # the last slot of page ``first - 1`` (page number at per_page 1)


def window_request(
    state: ListingState, first: int, *, start: int, window: int, check_boundaries: bool
) -> WindowRequest:
    """The window that begins at page ``first``: the start page alone, later ones ``window``
    pages; with ``check_boundaries``, a probe of the slot before it, where the page size tells
    where that slot is."""
    count = 1 if first == start else window
    probe_slot = None
    if check_boundaries and first > start and state.size_known:
        probe_slot = (first - 1) * state.expected
    return WindowRequest(first, count, probe_slot)


def slid_onto_read_page(probe_ids: Sequence[int], seen: AbstractSet[int]) -> bool:
    """True when the probe of the slot before a window found a test not listed: it slid onto
    the page before after that page was read, because a test before it vanished."""
    return bool(probe_ids) and probe_ids[0] not in seen


class ExploratoryTestPager:
    """Async iterator over the pages of one product's test listing."""

    def __init__(
        self,
        fetch: FetchPage,
        page_size: int,
        start_page: int = 1,
        *,
        check_boundaries: bool = False,
        window: int = 1,
    ) -> None:
        """``fetch(page, per_page)`` answers the decoded ``exploratory_tests`` list of one page.

        ``window``: after the first page, ask for this many pages at once. The listing has no
        page count, so a window may run past the end (those pages come back empty and are
        dropped); a full listing of many pages takes a fraction of the round trips. When a
        window shows the listing goes on, the next one is asked for before this one's pages are
        handed out, so the caller stores pages while the next ones travel.

        ``check_boundaries``: with every window after the first page, also ask (concurrently,
        one item) for the last slot of the page before it; a test found there that was not
        listed slid back because a test before it vanished, and that page is read again to
        collect it. The pages of one window are asked for at the same moment, so one probe
        guards against a change between windows; a change while a window is being answered
        can still skip the test at a boundary inside it (docs/sync.md).
        """
        if page_size < 1 or start_page < 1 or window < 1:
            raise ValueError("page_size, start_page and window must be >= 1")
        self._fetch = fetch
        self._asked = page_size
        self._start = start_page
        self._window = window
        self._check_boundaries = check_boundaries
        self.complete = False
        self.pages_fetched = 0
        self.slid_back = 0  # tests recovered after sliding onto a page already read

    def __aiter__(self) -> AsyncIterator[ExploratoryTestPage]:
        return self._pages()

    async def _pages(self) -> AsyncIterator[ExploratoryTestPage]:
        async for window in self.windows():
            for page in window:
                # Set before the last page is handed out: a caller may stop on ``page.last``.
                self.complete = page.last
                yield page

    async def windows(self) -> AsyncIterator[list[ExploratoryTestPage]]:
        """The pages window by window (one page at a time when ``window`` is 1), for a caller
        that stores a window at once. ``complete`` is set before the window holding the last
        page is handed out."""
        state = ListingState.starting(self._asked, self._start)
        seen: set[int] = set()
        number = self._start
        ahead: asyncio.Task[_Window] | None = None
        try:
            while True:
                if ahead is None:
                    answers, probe = await self._fetch_window(self._request(number, state))
                else:
                    answers, probe = await ahead
                    ahead = None
                pages, state, failure = await self._read(number, answers, probe, state, seen)
                ends = failure is not None or (bool(pages) and pages[-1].last)
                number += len(answers)
                if not ends and self._window > 1:
                    # The listing goes on: ask for the next window while the caller stores
                    # this one. (A listing of one page at a time usually stops after its first.)
                    request = self._request(number, state)
                    ahead = asyncio.ensure_future(self._fetch_window(request))
                if pages:
                    # Set before the last page is handed out: a caller may stop on ``page.last``.
                    self.complete = pages[-1].last
                    yield pages
                if failure is not None:
                    raise failure
                if ends:
                    return
        finally:
            if ahead is not None:
                ahead.cancel()
                await asyncio.gather(ahead, return_exceptions=True)

    def _request(self, first: int, state: ListingState) -> WindowRequest:
        return window_request(
            state,
            first,
            start=self._start,
            window=self._window,
            check_boundaries=self._check_boundaries,
        )

    async def _read(
        self,
        first: int,
        answers: list[list[Any] | BaseException],
        probe: list[Any],
        state: ListingState,
        seen: set[int],
    ) -> tuple[list[ExploratoryTestPage], ListingState, BaseException | None]:
        """The pages of the window from page ``first`` that can be handed out, the state after
        them, and the failure that ends the listing, if one does. Adds the new tests to
        ``seen``."""
        pages: list[ExploratoryTestPage] = []
        for offset, answer in enumerate(answers):
            if isinstance(answer, BaseException):
                return pages, state, answer  # the pages before it are handed out and can be kept
            number = first + offset
            fresh = await self._slid_back(probe, first - 1, seen) if offset == 0 else []
            fresh += [t for t in read_each(ExploratoryTest, answer) if t.id not in seen]
            seen.update(t.id for t in fresh)
            verdict = judge_page(state, len(answer), len(fresh))
            state = verdict.state
            if verdict.outcome == "repeated":
                if not await self._answers_everything(len(seen)):
                    return (
                        pages,
                        state,
                        BadResponseError(
                            f"page {number} repeated tests already listed: the server seems to "
                            "ignore the page parameter, so the listing cannot be completed"
                        ),
                    )
                # Paging is ignored altogether: every answer is the whole list.
                pages.append(ExploratoryTestPage(number, [], len(answer), True))
                break
            pages.append(ExploratoryTestPage(number, fresh, len(answer), verdict.last))
            if verdict.last:
                break  # pages of the window past the end are dropped
        return pages, state, None

    async def _fetch_window(self, request: WindowRequest) -> _Window:
        """The window's pages (each a list, or the error it raised) and the boundary probe's
        answer, all asked for at once. A failed probe raises."""
        first, count, slot = request.first, request.count, request.probe_slot
        pages = [self._fetch(first + i, self._asked) for i in range(count)]
        probe_call = self._fetch(slot, 1) if slot is not None else _nothing()
        answers = await asyncio.gather(probe_call, *pages, return_exceptions=True)
        self.pages_fetched += count + (slot is not None)
        probe = answers[0]
        if isinstance(probe, BaseException):
            raise probe
        return list(answers[1:]), probe

    async def _slid_back(
        self, probe: list[Any], previous: int, seen: set[int]
    ) -> list[ExploratoryTest]:
        """Tests that slid onto page ``previous`` after it was read (a test before them
        vanished): found by the probe, collected by reading that page again."""
        if not slid_onto_read_page([t.id for t in read_each(ExploratoryTest, probe[:1])], seen):
            return []
        again = await self._fetch(previous, self._asked)
        self.pages_fetched += 1
        slid = [t for t in read_each(ExploratoryTest, again) if t.id not in seen]
        seen.update(t.id for t in slid)
        self.slid_back += len(slid)
        return slid

    async def _answers_everything(self, known: int) -> bool:
        """True when the server ignores ``per_page`` as well as ``page``: asked for fewer tests
        than it has shown, it still answers more, so what was seen is the whole list."""
        if known < 2:
            return False
        probe = await self._fetch(self._start, known - 1)
        self.pages_fetched += 1
        return len(probe) > known - 1


async def _nothing() -> list[Any]:
    return []
