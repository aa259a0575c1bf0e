"""Paging a product's exploratory tests: newest first, to the real end, each test once.

The listing has no total, no next link and an unknown largest ``per_page``; its end is a short or
empty page. Two traps shape this class:

- A server may cap ``per_page`` silently, so a "short" page can be a full one. A short page whose
  length is a round number (a multiple of ``ROUND_PAGE``) is therefore not trusted as the end: the
  next page is asked for, and if it holds tests the cap becomes the page size from then on.
- The list moves while it is paged. A test appearing at the head pushes the others down, so the
  same test can come twice: tests are de-duplicated by id, and each page yields only the ones not
  seen before. A test vanishing from a page already read pulls the others up, so one would be
  skipped: with ``check_boundaries`` every boundary between two pages is probed once both were
  answered (``upstream/paging_probes.py``), the skipped test is collected, tests no longer found
  become ``suspects`` and a boundary that kept moving is counted in ``unsettled``.

A server that ignores paging answers more than was asked for on the first page: that page is the
whole list. When the whole list happens to fit one page, the second page repeats the first; one
probe with a smaller ``per_page`` tells a server that ignores paging (it still answers everything:
the listing is complete) from one that is broken (``BadResponseError`` rather than loop forever).

What each page says (the end, a possible cap, a page of repeats) is decided by ``judge_page`` over a
small immutable ``ListingState``, which window to ask for next by ``window_request``, and what a
boundary did by ``paging_probes.judge_boundary``: pure functions; the pager fetches and applies
them.

Example::

    pager = ExploratoryTestPager(fetch_page, page_size=25)
    async for page in pager:
        save(page.tests)        # new tests, newest first
    pager.complete              # True once the end was reached
    pager.suspects              # with check_boundaries: tests to ask for by id (maybe deleted)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from typing import Any, Literal

from testio_mirror.limits import MAX_ID
from testio_mirror.upstream.errors import BadResponseError, UpstreamError
from testio_mirror.upstream.models import ExploratoryTest, read_each
from testio_mirror.upstream.paging_probes import (
    PROBE_MARGIN,
    WIDE_MARGIN,
    Boundary,
    BoundaryVerdict,
    ProbeBlock,
    judge_boundary,
    pages_to_read_again,
    probe_block,
)

ROUND_PAGE = 10

FetchPage = Callable[[int, int], Awaitable[list[Any]]]
# The answers of a window's pages (each a list, or the error it raised), and its probes' answers.
_Window = tuple[list[list[Any] | BaseException], list[tuple["_Look", ProbeBlock, list[Any]]]]


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
    """The pages to ask for at once."""

    first: int  # the first page of the window
    count: int  # how many pages


def window_request(state: ListingState, first: int, *, start: int, window: int) -> WindowRequest:
    """The window that begins at page ``first``: the start page alone, later ones ``window``
    pages."""
    del state  # the window's extent does not depend on what the pages said so far
    return WindowRequest(first, 1 if first == start else window)


def page_first_slot(state: ListingState, number: int, received: int) -> int | None:
    """The 0-based slot of page ``number``'s first test, when the state after it says where
    its slots are (a full page of a known size); None otherwise: no boundary after it is
    probed."""
    if not state.size_known or received != state.expected:
        return None
    return (number - 1) * state.expected


@dataclass(frozen=True)
class _ReadPage:
    """A page as answered, for the boundary after it."""

    number: int
    ids: tuple[int | None, ...]
    first_slot: int | None


@dataclass
class _Look:
    """A boundary to probe, and how many times it was looked at."""

    boundary: Boundary
    looks: int = 0


def _raw_id(item: Any) -> int | None:
    """An item's id as sent, or None when the mirror cannot read it (it is skipped, and told,
    where its page is read: probes must neither anchor on it nor read it again)."""
    test_id = item.get("id") if isinstance(item, dict) else None
    return test_id if type(test_id) is int and -MAX_ID - 1 <= test_id <= MAX_ID else None


def _raw_ids(answer: Sequence[Any]) -> tuple[int | None, ...]:
    return tuple(_raw_id(item) for item in answer)


def _items_of(answer: Sequence[Any], wanted: AbstractSet[int]) -> list[Any]:
    return [item for item in answer if _raw_id(item) in wanted]


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

        ``check_boundaries``: every boundary between two pages read is probed once both pages
        were answered (``upstream/paging_probes.py``), with the next window's requests and in a
        last round before the last window is handed out (or in ``settle()``, for a caller that
        stops early). A test skipped because the list moved is collected from the probe's
        answer and handed out with the next pages; tests a probe or a page read again no longer
        finds are kept in ``suspects`` (the caller asks for them by id: they may be deleted);
        a boundary that kept moving through two looks is counted in ``unsettled``.
        """
        if page_size < 1 or start_page < 1 or window < 1:
            raise ValueError("page_size, start_page and window must be >= 1")
        self._fetch = fetch
        self._asked = page_size
        self._start = start_page
        self._window = window
        self._check_boundaries = check_boundaries
        self._seen: set[int] = set()
        self._read_pages: dict[int, _ReadPage] = {}
        self._to_probe: list[_Look] = []
        self._late: list[ExploratoryTest] = []  # collected, not handed out yet
        self.complete = False
        self.pages_fetched = 0
        self.slid_back = 0  # tests collected after sliding onto a page already read
        self.suspects: set[int] = set()  # tests listed, then missing: ask for them by id
        self.unsettled: list[int] = []  # pages whose boundary after them kept moving

    def __aiter__(self) -> AsyncIterator[ExploratoryTestPage]:
        return self._pages()

    async def _pages(self) -> AsyncIterator[ExploratoryTestPage]:
        last: ExploratoryTestPage | None = None
        async for window in self.windows():
            for page in window:
                # Set before the last page is handed out: a caller may stop on ``page.last``.
                self.complete = page.last
                last = page
                yield page
        late = await self.settle()  # boundaries whose last round failed: asked again, or raise
        if late and last is not None:
            yield ExploratoryTestPage(last.number, late, 0, last.last)

    async def windows(self) -> AsyncIterator[list[ExploratoryTestPage]]:
        """The pages window by window (one page at a time when ``window`` is 1), for a caller
        that stores a window at once. ``complete`` is set before the window holding the last
        page is handed out."""
        state = ListingState.starting(self._asked, self._start)
        number = self._start
        ahead: asyncio.Task[_Window] | None = None
        try:
            while True:
                if ahead is None:
                    answers, probes = await self._fetch_window(self._request(number, state))
                else:
                    answers, probes = await ahead
                    ahead = None
                collected = await self._judge(probes)
                pages, state, failure = await self._read(number, answers, state)
                ends = failure is not None or (bool(pages) and pages[-1].last)
                number += len(answers)
                if not ends and self._window > 1:
                    # The listing goes on: ask for the next window while the caller stores
                    # this one. (A listing of one page at a time usually stops after its first.)
                    request = self._request(number, state)
                    ahead = asyncio.ensure_future(self._fetch_window(request))
                if ends and failure is None:
                    # The last round, before the end is told. If a probe fails, the boundaries
                    # stay queued: a caller stops on the last page, then calls ``settle()``,
                    # which asks again and raises.
                    with contextlib.suppress(UpstreamError):
                        collected += await self.settle()
                if pages and collected:
                    pages[-1] = replace(pages[-1], tests=pages[-1].tests + collected)
                elif collected:
                    self._late += collected  # no page to carry them: the next settle() does
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

    async def settle(self) -> list[ExploratoryTest]:
        """Probe the boundaries not probed yet (each unsettled one a second time, wider); the
        tests they collected. Call it when stopping before the end (``windows()`` does it
        before handing out the last page).

        Raises:
            UpstreamError: a probe could not be fetched.
        """
        while self._to_probe:
            looks, self._to_probe = self._to_probe, []
            try:
                probes = await self._send_probes(looks)
            except BaseException:
                self._to_probe[:0] = looks
                raise
            # Kept until handed out: a later round that fails must not lose them.
            self._late += await self._judge(probes)
        late, self._late = self._late, []
        return late

    def _request(self, first: int, state: ListingState) -> WindowRequest:
        return window_request(state, first, start=self._start, window=self._window)

    async def _read(
        self,
        first: int,
        answers: list[list[Any] | BaseException],
        state: ListingState,
    ) -> tuple[list[ExploratoryTestPage], ListingState, BaseException | None]:
        """The pages of the window from page ``first`` that can be handed out, the state after
        them, and the failure that ends the listing, if one does. Adds the new tests to the
        listed ones, and the boundaries between pages read to those to probe."""
        pages: list[ExploratoryTestPage] = []
        seen = self._seen
        for offset, answer in enumerate(answers):
            if isinstance(answer, BaseException):
                return pages, state, answer  # the pages before it are handed out and can be kept
            number = first + offset
            fresh = [t for t in read_each(ExploratoryTest, answer) if t.id not in seen]
            seen.update(t.id for t in fresh)
            verdict = judge_page(state, len(answer), len(fresh))
            self._note_page(number, answer, verdict.state)
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
                self._to_probe.clear()
                pages.append(ExploratoryTestPage(number, [], len(answer), True))
                break
            pages.append(ExploratoryTestPage(number, fresh, len(answer), verdict.last))
            if verdict.last:
                break  # pages of the window past the end are dropped
        return pages, state, None

    def _note_page(self, number: int, answer: list[Any], state: ListingState) -> None:
        """Keep what the boundaries around page ``number`` need, and queue the boundary
        between it and the page before when both were read from known slots."""
        if not self._check_boundaries or not answer or len(answer) > state.asked:
            return
        page = _ReadPage(number, _raw_ids(answer), page_first_slot(state, number, len(answer)))
        self._read_pages[number] = page
        before = self._read_pages.get(number - 1)
        if before is not None and before.first_slot is not None:
            last_slot = before.first_slot + len(before.ids) - 1
            self._to_probe.append(_Look(Boundary(before.number, last_slot, before.ids, page.ids)))

    async def _fetch_window(self, request: WindowRequest) -> _Window:
        """The window's pages (each a list, or the error it raised), asked for at once with
        the probes of the boundaries waiting for one. A failed probe raises."""
        looks, self._to_probe = self._to_probe, []
        first, count = request.first, request.count
        pages = [self._fetch(first + i, self._asked) for i in range(count)]
        try:
            probed, *answers = await asyncio.gather(
                self._send_probes(looks), *pages, return_exceptions=True
            )
        except BaseException:
            self._to_probe[:0] = looks  # cancelled: a later round probes them
            raise
        self.pages_fetched += count
        if isinstance(probed, BaseException):
            raise probed
        return list(answers), probed

    async def _send_probes(self, looks: list[_Look]) -> list[tuple[_Look, ProbeBlock, list[Any]]]:
        blocks = [
            probe_block(look.boundary, PROBE_MARGIN if not look.looks else WIDE_MARGIN)
            for look in looks
        ]
        answers = await asyncio.gather(*(self._fetch(b.page, b.per_page) for b in blocks))
        self.pages_fetched += len(blocks)
        return list(zip(looks, blocks, answers, strict=True))

    async def _judge(
        self, probes: list[tuple[_Look, ProbeBlock, list[Any]]]
    ) -> list[ExploratoryTest]:
        """Apply one round of probe answers: the skipped tests they hold (returned, and listed),
        the suspects they and the pages read again show, the boundaries to look at again."""
        collected: list[ExploratoryTest] = []
        verdicts: list[tuple[int, BoundaryVerdict]] = []
        for look, block, answer in probes:
            verdict = judge_boundary(look.boundary, block.first_slot, _raw_ids(answer), self._seen)
            verdicts.append((look.boundary.page, verdict))
            if verdict.outcome == "unsettled":
                look.looks += 1
                if look.looks < 2:
                    self._to_probe.append(look)
                else:
                    self.unsettled.append(look.boundary.page)
                continue
            self.suspects.update(verdict.lost)
            # Only the skipped items are read: the others were read (and any unreadable one
            # told) with their page.
            collected += self._collect(
                read_each(ExploratoryTest, _items_of(answer, set(verdict.missed)))
            )
        for number in pages_to_read_again(verdicts):
            collected += await self._read_again(number)
        return collected

    def _collect(self, tests: Iterable[ExploratoryTest]) -> list[ExploratoryTest]:
        fresh = [t for t in tests if t.id not in self._seen]
        self._seen.update(t.id for t in fresh)
        self.slid_back += len(fresh)
        return fresh

    async def _read_again(self, number: int) -> list[ExploratoryTest]:
        """Page ``number`` read again after tests before its end vanished: those of its first
        reading it no longer holds are suspects; tests it holds that were never listed slid
        onto it and are collected."""
        again = await self._fetch(number, self._asked)
        self.pages_fetched += 1
        now = {t for t in _raw_ids(again) if t is not None}
        before = self._read_pages[number].ids
        self.suspects.update(t for t in before if t is not None and t not in now)
        return self._collect(read_each(ExploratoryTest, _items_of(again, now - self._seen)))

    async def _answers_everything(self, known: int) -> bool:
        """True when the server ignores ``per_page`` as well as ``page``: asked for fewer tests
        than it has shown, it still answers more, so what was seen is the whole list."""
        if known < 2:
            return False
        probe = await self._fetch(self._start, known - 1)
        self.pages_fetched += 1
        return len(probe) > known - 1
