"""The verdicts on a listing's page boundaries, apart from any fetching."""

from __future__ import annotations

import pytest

from testio_mirror.upstream.paging_probes import (
    PROBE_MARGIN,
    Boundary,
    BoundaryVerdict,
    ProbeBlock,
    covering_block,
    judge_boundary,
    pages_to_read_again,
    probe_block,
)

# Ids newest first, 100 down to 1: slot s holds id 100 - s. Pages of 10: page 3 is 80..71.
PAGE_3 = tuple(range(80, 70, -1))
PAGE_4 = tuple(range(70, 60, -1))
BOUNDARY = Boundary(page=3, last_slot=29, tail=PAGE_3, head=PAGE_4)


@pytest.mark.parametrize(
    ("first", "last"),
    [(0, 0), (27, 32), (7, 12), (24, 25), (99, 104), (9_998, 10_003), (1_000_000, 1_000_005)],
)
def test_covering_block_holds_the_slots_in_one_page(first: int, last: int) -> None:
    block = covering_block(first, last)
    assert block.per_page >= last - first + 1
    assert block.first_slot <= first
    assert last < block.first_slot + block.per_page


def test_covering_block_refuses_slots_out_of_order() -> None:
    with pytest.raises(ValueError, match="first <= last"):
        covering_block(5, 4)


def test_probe_block_reads_the_margin_around_the_two_edge_slots() -> None:
    block = probe_block(BOUNDARY, PROBE_MARGIN)
    assert block == ProbeBlock(page=4, per_page=9)  # slots 27 to 35
    assert block.first_slot <= 29 - PROBE_MARGIN
    assert block.first_slot + 9 > 30 + PROBE_MARGIN
    assert probe_block(Boundary(1, 0, (5,), (4,)), PROBE_MARGIN).first_slot == 0


def answer(first_slot: int, per_page: int, ids: list[int]) -> list[int | None]:
    """What a probe of slots ``first_slot`` on answers from the list ``ids`` (newest first)."""
    return list(ids[first_slot : first_slot + per_page])


ALL = list(range(100, 0, -1))
SEEN = set(range(100, 61))  # pages 1 to 4 listed


def test_an_unmoved_boundary_held() -> None:
    verdict = judge_boundary(BOUNDARY, 27, answer(27, 9, ALL), SEEN)
    assert verdict == BoundaryVerdict("held")


def test_a_test_vanished_before_the_boundary_slid_and_the_skipped_one_is_missed() -> None:
    # 75 (on page 3) went after page 3 was read; page 4 came shifted: 70 slid onto page 3 and
    # was skipped, page 4 as read begins with 69.
    now = [i for i in ALL if i != 75]
    boundary = Boundary(3, 29, PAGE_3, tuple(range(69, 59, -1)))
    verdict = judge_boundary(boundary, 27, answer(27, 9, now), SEEN - {70})
    assert verdict.outcome == "slid"
    assert verdict.shift == -1
    assert verdict.missed == (70,)
    assert verdict.lost == ()


def test_the_edge_test_itself_vanished_is_lost_and_the_tail_anchors_on_the_one_before() -> None:
    now = [i for i in ALL if i != 71]
    boundary = Boundary(3, 29, PAGE_3, tuple(range(69, 59, -1)))
    verdict = judge_boundary(boundary, 27, answer(27, 9, now), SEEN - {70})
    assert (verdict.outcome, verdict.shift, verdict.missed, verdict.lost) == (
        "slid",
        0,  # 72 is where it was
        (70,),
        (71,),
    )


def test_a_test_arriving_repeats_the_edge_and_misses_nothing() -> None:
    now = [101, *ALL]
    boundary = Boundary(3, 29, PAGE_3, (71, *range(70, 61, -1)))  # 71 came again on page 4
    verdict = judge_boundary(boundary, 27, answer(27, 9, now), SEEN)
    assert (verdict.outcome, verdict.shift, verdict.missed, verdict.lost) == ("slid", 1, (), ())


def test_a_list_moved_past_the_probe_is_unsettled() -> None:
    now = ALL[12:]  # twelve tests gone at the head
    verdict = judge_boundary(BOUNDARY, 27, answer(27, 9, now), SEEN)
    assert verdict.outcome == "unsettled"


def test_items_without_an_id_are_never_anchors_nor_missed() -> None:
    # An item the mirror cannot read sits between the pages: nothing to collect, nothing moved.
    probe: list[int | None] = [73, 72, 71, None, 70, 69]
    assert judge_boundary(BOUNDARY, 27, probe, SEEN) == BoundaryVerdict("held")
    gone: list[int | None] = [None, None, None, None, 70, 69]
    assert judge_boundary(BOUNDARY, 27, gone, SEEN).outcome == "unsettled"


def test_pages_to_read_again_are_where_the_shift_grew() -> None:
    held = BoundaryVerdict("held")
    back = BoundaryVerdict("slid", -1)
    more = BoundaryVerdict("slid", -2)
    ahead = BoundaryVerdict("slid", 1)
    unsettled = BoundaryVerdict("unsettled")
    # Page 3 lost a test (its boundary moved back, page 2's did not); pages 4 and 5 moved back
    # as far as page 3 did (nothing of theirs went); page 6 lost another; page 8 gained.
    verdicts = [(2, held), (3, back), (4, back), (5, back), (6, more), (7, unsettled), (8, ahead)]
    assert pages_to_read_again(verdicts) == [3, 6]
    assert pages_to_read_again([(5, back)]) == [5]  # alone in its round: read it again
    assert pages_to_read_again([]) == []
