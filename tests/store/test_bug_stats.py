"""A page of a statistic's groups: positions in its order, totals over every group, cursors that
belong to one grouping."""

from __future__ import annotations

import pytest

from testio_mirror.errors import CursorError
from testio_mirror.store.bug_stats import stats_page
from testio_mirror.store.records import StatsGroup


def group(key: int, total: int) -> StatsGroup:
    accepted, rejected = total // 2, total // 4
    return StatsGroup(
        key=str(key),
        label=f"test {key}",
        total=total,
        accepted=accepted,
        rejected=rejected,
        forwarded=total - accepted - rejected,
        acceptance_rate=None,
    )


GROUPS = [group(key, 100 - key) for key in range(25)]


def test_pages_follow_each_other_and_totals_cover_every_group() -> None:
    seen: list[str | None] = []
    cursor = None
    for _ in range(10):
        page = stats_page(GROUPS, "test", 7, cursor)
        assert page.group_count == 25
        assert page.total == sum(g.total for g in GROUPS)
        assert page.accepted == sum(g.accepted for g in GROUPS)
        assert len(page.cursors) == len(page.groups) <= 7
        seen.extend(g.key for g in page.groups)
        cursor = page.next_cursor
        if cursor is None:
            break
        assert cursor == page.cursors[-1]
    assert seen == [g.key for g in GROUPS]
    decided = page.accepted + page.rejected
    assert page.acceptance_rate == round(page.accepted / decided, 4)


def test_the_cursor_after_any_group_goes_on_right_after_it() -> None:
    first = stats_page(GROUPS, "test", 10, None)
    after_third = stats_page(GROUPS, "test", 10, first.cursors[2])
    assert [g.key for g in after_third.groups] == [g.key for g in GROUPS[3:13]]


def test_without_a_limit_every_group_is_answered() -> None:
    page = stats_page(GROUPS, "month", None, None)
    assert page.groups == GROUPS
    assert page.next_cursor is None


def test_a_cursor_of_another_grouping_is_refused() -> None:
    cursor = stats_page(GROUPS, "test", 5, None).next_cursor
    assert cursor is not None
    with pytest.raises(CursorError):
        stats_page(GROUPS, "tester", 5, cursor)


def test_nothing_to_count_gives_an_empty_page() -> None:
    page = stats_page([], "severity", 20, None)
    assert (page.groups, page.group_count, page.total, page.next_cursor) == ([], 0, 0, None)
    assert page.acceptance_rate is None
