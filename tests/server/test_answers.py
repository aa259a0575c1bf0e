"""``respond``: compact JSON, the same in text and structure, and never larger than the ceiling:
a list answer loses items from its end (with a cursor right after the last one kept), a single
answer has its long texts cut; both say so with ``truncated`` and a hint."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from testio_mirror.server.answers import (
    Bug,
    BugAnswer,
    BugCounts,
    BugList,
    ExploratoryTest,
    ExploratoryTestReport,
    respond,
)
from testio_mirror.store.records import BugRecord, ExploratoryTestRecord, Freshness

NOW = datetime(2026, 11, 21, 6, 0, tzinfo=UTC)
FRESH = Freshness(source="mirror", as_of=NOW, age_seconds=1.25, stale=False)


def bug(bug_id: int, text: str = "The screen shows wrong text. " * 20) -> Bug:
    record = BugRecord(
        id=bug_id,
        test_id=7,
        product_id=101,
        feature_id=None,
        title=f"Bug number {bug_id}",
        severity="high",
        status="accepted",
        auto_accepted=False,
        known=False,
        actual_result=text,
        expected_result=text,
        steps=[f"step {i}: {text[:60]}" for i in range(5)],
        reported_at=NOW,
        exported_at=None,
        author="tester_ana",
        reject_reason=None,
        deleted=False,
        fetched_at=NOW,
    )
    return Bug.of(record, "full")


def size(result_text: str) -> int:
    return len(result_text.encode())


def answer_of(bugs: list[Bug], next_cursor: str | None) -> BugList:
    return BugList(bugs=bugs, next_cursor=next_cursor, hint=None, freshness=FRESH)


def text(result: object) -> str:
    blocks = getattr(result, "content")  # noqa: B009
    return str(blocks[0].text)


def test_an_answer_under_the_ceiling_is_whole_and_compact() -> None:
    bugs = [bug(i) for i in range(3)]
    result = respond(answer_of(bugs, None), max_bytes=60_000, cursors=["a", "b", "c"])
    assert result.structured_content is not None
    assert json.loads(text(result)) == result.structured_content
    assert len(result.structured_content["bugs"]) == 3
    assert "truncated" not in result.structured_content
    assert "\n" not in text(result)
    assert '": ' not in text(result)


@pytest.mark.parametrize("ceiling", [3_000, 8_000, 20_000])
def test_a_long_list_is_cut_from_its_end_with_a_cursor_after_the_last_item_kept(
    ceiling: int,
) -> None:
    bugs = [bug(i) for i in range(50)]
    cursors = [f"after-{i}" for i in range(50)]
    result = respond(answer_of(bugs, "after-49"), max_bytes=ceiling, cursors=cursors)
    data = result.structured_content
    assert data is not None
    assert size(text(result)) <= ceiling
    assert json.loads(text(result)) == data
    kept = [b["id"] for b in data["bugs"]]
    assert 0 < len(kept) < 50
    assert kept == list(range(len(kept)))  # the first ones, in order
    assert data["truncated"] is True
    assert data["next_cursor"] == f"after-{len(kept) - 1}"
    assert "next_cursor" in data["hint"]
    assert "limit" in data["hint"]
    assert "detail" in data["hint"]  # list_bugs can also be asked concise
    # As many as fit: one more would not have.
    one_more = respond(
        answer_of(bugs[: len(kept) + 1], None), max_bytes=10**9, cursors=cursors[: len(kept) + 1]
    )
    assert size(text(one_more)) > ceiling - 400


def test_a_cut_last_page_still_hands_out_a_cursor_for_the_rest() -> None:
    bugs = [bug(i) for i in range(10)]
    cursors = [f"after-{i}" for i in range(10)]
    result = respond(answer_of(bugs, None), max_bytes=4_000, cursors=cursors)
    data = result.structured_content
    assert data is not None
    assert data["truncated"] is True
    assert data["next_cursor"] == cursors[len(data["bugs"]) - 1]


def test_a_single_huge_bug_has_its_long_texts_cut() -> None:
    huge = 'Ünïcode and quotes " and newlines\n ' * 20_000  # about 700 KB
    result = respond(BugAnswer(bug=bug(1, huge), freshness=FRESH), max_bytes=10_000)
    data = result.structured_content
    assert data is not None
    assert size(text(result)) <= 10_000
    assert json.loads(text(result)) == data
    assert data["truncated"] is True
    assert data["hint"]
    shown = data["bug"]["actual_result"]
    assert huge.startswith(shown.removesuffix("…"))
    assert shown.endswith("…")
    assert data["bug"]["id"] == 1
    assert data["bug"]["title"] == "Bug number 1"  # short texts stay whole
    assert data["freshness"]["stale"] is False


def test_an_item_larger_than_the_ceiling_alone_is_kept_cut() -> None:
    huge = "x" * 50_000
    bugs = [bug(1, huge), bug(2, huge)]
    result = respond(answer_of(bugs, None), max_bytes=6_000, cursors=["after-1", "after-2"])
    data = result.structured_content
    assert data is not None
    assert size(text(result)) <= 6_000
    assert [b["id"] for b in data["bugs"]] == [1]
    assert data["next_cursor"] == "after-1"
    assert data["truncated"] is True


def test_a_test_with_huge_instructions_keeps_its_counts_and_is_cut() -> None:
    record = ExploratoryTestRecord(
        id=5,
        product_id=101,
        product_name="Acme Web Shop",
        section_id=None,
        title="Checkout regression",
        status="running",
        testing_type="coverage",
        goal="Find bugs. " * 10_000,
        instructions="Do this, then that. " * 20_000,
        out_of_scope=None,
        start_at=NOW,
        end_at=NOW,
        review_status=None,
        created_by=None,
        submitted_by=None,
        feature_ids=list(range(50)),
        deleted=False,
        fetched_at=NOW,
        bugs_fetched_at=NOW,
    )
    counts = BugCounts(by_severity={"high": 3}, by_status={"accepted": 3}, total=3)
    report = ExploratoryTestReport(
        test=ExploratoryTest.of(record, "full"),
        bug_counts=counts,
        freshness=FRESH,
        bugs_freshness=FRESH,
    )
    result = respond(report, max_bytes=5_000)
    data = result.structured_content
    assert data is not None
    assert size(text(result)) <= 5_000
    assert data["truncated"] is True
    assert data["bug_counts"] == counts.model_dump()
    assert data["test"]["instructions"].startswith("Do this, then that.")
    assert data["test"]["goal"].endswith("…")
