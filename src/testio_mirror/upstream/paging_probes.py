"""Did a page boundary of a listing hold while the pages around it were answered?

The pages of a window are asked for at once but answered one after another, so a test that
vanishes (or arrives) in between shifts the pages answered after it: the test at the boundary
slides onto the page before, already answered, and is skipped; or a test is answered twice. Once
both pages of a boundary were answered, one small request reads the slots around it again (a
``ProbeBlock``: ``per_page`` chosen so that one page of it covers them) and ``judge_boundary``
says what the boundary did:

- ``held``: page k's tail and page k+1's head are where they were, next to each other;
- ``slid``: both are found, but moved (``shift``), with tests between them that were never listed
  (``missed``: skipped, collected from the probe's answer) or edge tests gone (``lost``: maybe
  deleted, checked by id);
- ``unsettled``: the list moved past the probed slots; a wider look may still find them.

Pure functions over ids and slots; the pager (``upstream/paging.py``) sends and applies them.

Example::

    boundary = Boundary(page=3, last_slot=74, tail=(...25 ids), head=(...25 ids))
    block = probe_block(boundary, PROBE_MARGIN)          # fetch(block.page, block.per_page)
    verdict = judge_boundary(boundary, block.first_slot, ids_answered, seen)
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Literal

# Slots read on each side of a boundary: a shift of up to this many is seen on the first look.
PROBE_MARGIN = 2
# The second look at an unsettled boundary reads this many on each side.
WIDE_MARGIN = 10

BoundaryOutcome = Literal["held", "slid", "unsettled"]


@dataclass(frozen=True)
class Boundary:
    """The boundary after page ``page``, as both its pages were answered."""

    page: int  # page k, the one before the boundary
    last_slot: int  # 0-based slot of page k's last test when page k was answered
    tail: tuple[int | None, ...]  # page k's ids as answered (None: an item without a usable id)
    head: tuple[int | None, ...]  # page k+1's ids as answered


@dataclass(frozen=True)
class ProbeBlock:
    """One request that reads the slots around a boundary: page ``page`` at ``per_page``."""

    page: int
    per_page: int

    @property
    def first_slot(self) -> int:
        return (self.page - 1) * self.per_page


@dataclass(frozen=True)
class BoundaryVerdict:
    """What the probe of one boundary says."""

    outcome: BoundaryOutcome
    # How far page k's tail moved since page k was answered: negative when tests before it
    # vanished, positive when tests arrived before it.
    shift: int = 0
    missed: tuple[int, ...] = ()  # now between the two pages and never listed: skipped
    lost: tuple[int, ...] = ()  # edge tests of the two pages missing from the probe: maybe gone


def covering_block(first: int, last: int) -> ProbeBlock:
    """The smallest page (``per_page`` at least ``last - first + 1``) holding slots ``first``
    to ``last`` (0-based). Page 1 holds them all, so one always exists; near slots a few wider
    than asked usually do."""
    if first < 0 or last < first:
        raise ValueError("slots must satisfy 0 <= first <= last")
    per_page = last - first + 1
    while first // per_page != last // per_page:
        per_page += 1
    return ProbeBlock(first // per_page + 1, per_page)


def probe_block(boundary: Boundary, margin: int) -> ProbeBlock:
    """The request reading ``margin`` slots on each side of the boundary's two edge slots."""
    return covering_block(max(0, boundary.last_slot - margin), boundary.last_slot + 1 + margin)


def judge_boundary(
    boundary: Boundary,
    first_slot: int,
    answered: Sequence[int | None],
    seen: AbstractSet[int],
) -> BoundaryVerdict:
    """The verdict on a boundary from the ids ``answered`` by a probe starting at slot
    ``first_slot``; ``seen`` are the ids the listing holds so far."""
    where = {test_id: i for i, test_id in enumerate(answered) if test_id is not None}
    # The tail's anchor: its latest test still in the probe; the head's: its earliest.
    tail_at = next(
        ((i, where[t]) for i, t in reversed(list(enumerate(boundary.tail))) if t in where),
        None,
    )
    head_at = next(((i, where[t]) for i, t in enumerate(boundary.head) if t in where), None)
    if tail_at is None or head_at is None:
        return BoundaryVerdict("unsettled")
    tail_index, tail_pos = tail_at
    head_index, head_pos = head_at
    slot_then = boundary.last_slot - (len(boundary.tail) - 1 - tail_index)
    shift = first_slot + tail_pos - slot_then
    missed = tuple(t for t in answered[tail_pos + 1 : head_pos] if t is not None and t not in seen)
    lost = tuple(
        t
        for t in (*boundary.tail[tail_index + 1 :], *boundary.head[:head_index])
        if t is not None and t not in where
    )
    if shift == 0 and not missed and not lost:
        return BoundaryVerdict("held")
    return BoundaryVerdict("slid", shift, missed, lost)


def pages_to_read_again(verdicts: Sequence[tuple[int, BoundaryVerdict]]) -> list[int]:
    """The pages before boundaries whose tail moved back (tests before it vanished) more than
    the boundary before it did, in one round of probes (``(page k, verdict)``, any order): the
    vanished tests were on that page, and reading it again says which (they may be deleted).
    A page whose previous boundary moved back as far lost nothing itself."""
    shifts = {page: v.shift for page, v in verdicts if v.outcome == "slid"}
    return sorted(
        page for page, shift in shifts.items() if shift < 0 and shift < shifts.get(page - 1, 0)
    )
