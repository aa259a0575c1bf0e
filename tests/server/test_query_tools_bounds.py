"""Every answer is bounded: list answers have a limit and a cursor (bug_stats too, with its totals
over every group), and no answer is larger than TESTIO_MAX_ANSWER_BYTES; when one is cut, its
cursor goes on right after the last item kept, so the pages lose and repeat nothing."""

from __future__ import annotations

import contextlib
import sqlite3
from collections import Counter
from collections.abc import Iterator

import pytest
from mcp import Client

from testio_mirror.sandbox import DatasetSpec
from tests.helpers.expected_answers import newest_first, words
from tests.helpers.mcp_session import JSON, Mirrored, call, connect, synced_sandbox, text_of

DATASET = DatasetSpec(
    seed=5,
    products=3,
    section_products=1,
    features_per_product=12,
    tests_per_product=40,
    bugs_per_test=3,
)
CEILING = 4_000


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mirrored]:
    with synced_sandbox(DATASET, tmp_path_factory.mktemp("bounds"), include_bugs=True) as mirror:
        yield mirror


async def every_page(
    client: Client, tool: str, args: JSON, key: str, ceiling: int | None = None
) -> tuple[list[JSON], int]:
    """Every item of a paged tool, following next_cursor; and how many answers were cut (each
    at most ``ceiling`` bytes of JSON)."""
    found: list[JSON] = []
    cut = 0
    cursor = ""
    for _ in range(500):
        result = await client.call_tool(tool, {**args, "cursor": cursor} if cursor else args)
        assert not result.is_error, text_of(result)
        answer = result.structured_content
        assert answer is not None
        if ceiling is not None:
            assert len(text_of(result).encode()) <= ceiling
        assert len(answer[key]) <= args.get("limit", 100)
        found.extend(answer[key])
        cut += bool(answer.get("truncated"))
        if answer.get("next_cursor") is None:
            return found, cut
        assert answer.get("hint"), "a page with more to come should say how to get it"
        cursor = answer["next_cursor"]
    raise AssertionError(f"{tool} never reached its last page")


async def test_bug_stats_by_test_answers_the_top_groups_with_totals_over_all(
    mirrored: Mirrored,
) -> None:
    bugs = mirrored.truth["bugs"].values()
    per_test = Counter(b["test"]["id"] for b in bugs)
    expected = sorted(per_test, key=lambda test_id: (-per_test[test_id], test_id))
    async with connect(mirrored.settings) as client:
        first = await call(client, "bug_stats", {"group_by": "test"})
        groups, _ = await every_page(
            client, "bug_stats", {"group_by": "test", "limit": 7}, "groups"
        )
    assert len(first["groups"]) == 20 < len(per_test)
    assert first["group_count"] == len(per_test)
    assert first["total"] == len(bugs)  # over every group, not only those shown
    decided = Counter(b["status"] for b in bugs)
    rate = decided["accepted"] / (decided["accepted"] + decided["rejected"])
    assert first["acceptance_rate"] == round(rate, 4)
    assert first["next_cursor"]
    assert "next_cursor" in first["hint"]
    assert [int(g["key"]) for g in groups] == expected  # all of them, once, largest first
    assert [g["total"] for g in groups] == [per_test[t] for t in expected]


async def test_bug_stats_by_month_pages_in_time_order(mirrored: Mirrored) -> None:
    months = {b["reported_at"][:7] for b in mirrored.truth["bugs"].values()}
    assert len(months) > 2
    async with connect(mirrored.settings) as client:
        groups, _ = await every_page(
            client, "bug_stats", {"group_by": "month", "limit": 2}, "groups"
        )
    assert [g["key"] for g in groups] == sorted(months)


async def test_a_cursor_of_another_listing_is_refused(mirrored: Mirrored) -> None:
    async with connect(mirrored.settings) as client:
        stats = await call(client, "bug_stats", {"group_by": "test", "limit": 2})
        products = await call(client, "list_products", {"limit": 1})
        tests = await call(client, "list_tests", {"limit": 1})
        misused = [
            ("bug_stats", {"group_by": "tester", "cursor": stats["next_cursor"]}),
            ("list_bugs", {"cursor": products["next_cursor"]}),
            ("list_features", {"product_id": 101, "cursor": products["next_cursor"]}),
            ("search", {"query": "crash", "cursor": tests["next_cursor"]}),
        ]
        results = [await client.call_tool(tool, args) for tool, args in misused]
    for (tool, _), result in zip(misused, results, strict=True):
        assert result.is_error, tool
        assert "invalid cursor" in text_of(result), tool


async def test_products_and_features_are_paged(mirrored: Mirrored) -> None:
    truth = mirrored.truth
    async with connect(mirrored.settings) as client:
        products, _ = await every_page(client, "list_products", {"limit": 2}, "products")
        features, _ = await every_page(
            client, "list_features", {"product_id": 101, "limit": 5}, "features"
        )
    assert [p["id"] for p in products] == sorted(truth["products"])
    assert [f["id"] for f in features] == sorted(truth["features"][101])


async def test_search_is_paged_without_losing_or_repeating_hits(mirrored: Mirrored) -> None:
    titles = Counter(w for b in mirrored.truth["bugs"].values() for w in words(b["title"]))
    common = titles.most_common(1)[0][0]
    async with connect(mirrored.settings) as client:
        whole = await call(client, "search", {"query": common, "limit": 50})
        hits, _ = await every_page(client, "search", {"query": common, "limit": 3}, "hits")
    assert len(whole["hits"]) > 3
    assert [(h["kind"], h["id"]) for h in hits][: len(whole["hits"])] == [
        (h["kind"], h["id"]) for h in whole["hits"]
    ]
    assert len({(h["kind"], h["id"]) for h in hits}) == len(hits)


@pytest.mark.parametrize(
    ("tool", "args", "key", "order"),
    [
        ("list_bugs", {"detail": "full", "limit": 100}, "bugs", "reported_at"),
        ("list_tests", {"limit": 100}, "tests", "end_at"),
    ],
)
async def test_answers_over_the_ceiling_are_cut_and_their_pages_lose_nothing(
    mirrored: Mirrored, tool: str, args: JSON, key: str, order: str
) -> None:
    settings = mirrored.settings.model_copy(update={"max_answer_bytes": CEILING})
    truth = mirrored.truth[key]
    async with connect(settings) as client:
        items, cut = await every_page(client, tool, args, key, CEILING)
        first = await client.call_tool(tool, args)
    assert len(text_of(first).encode()) <= CEILING
    assert cut > 0
    assert [i["id"] for i in items] == [t["id"] for t in newest_first(truth.values(), order)]


async def test_bug_stats_over_the_ceiling_goes_on_after_the_last_group_kept(
    mirrored: Mirrored,
) -> None:
    settings = mirrored.settings.model_copy(update={"max_answer_bytes": CEILING})
    per_test = Counter(b["test"]["id"] for b in mirrored.truth["bugs"].values())
    async with connect(settings) as client:
        groups, cut = await every_page(
            client, "bug_stats", {"group_by": "test", "limit": 100}, "groups", CEILING
        )
    assert cut > 0
    assert sorted(int(g["key"]) for g in groups) == sorted(per_test)


@contextlib.contextmanager
def huge_texts(mirrored: Mirrored, bug_id: int) -> Iterator[None]:
    """One bug's texts made enormous in the mirror itself, put back afterwards."""
    path = mirrored.settings.database_path
    with contextlib.closing(sqlite3.connect(path)) as conn:
        before = conn.execute(
            "SELECT actual_result, steps FROM bugs WHERE id = ?", (bug_id,)
        ).fetchone()
        steps = '["' + "click here, " * 20_000 + '"]'
        with conn:
            conn.execute(
                "UPDATE bugs SET actual_result = ?, steps = ? WHERE id = ?",
                ("It crashes. " * 30_000, steps, bug_id),
            )
    try:
        yield
    finally:
        with contextlib.closing(sqlite3.connect(path)) as conn, conn:
            conn.execute(
                "UPDATE bugs SET actual_result = ?, steps = ? WHERE id = ?", (*before, bug_id)
            )


async def test_get_bug_with_huge_texts_stays_under_the_ceiling(mirrored: Mirrored) -> None:
    bug_id = min(mirrored.truth["bugs"])
    with huge_texts(mirrored, bug_id):
        async with connect(mirrored.settings) as client:
            result = await client.call_tool("get_bug", {"bug_id": bug_id})
    assert not result.is_error, text_of(result)
    answer = result.structured_content
    assert answer is not None
    assert len(text_of(result).encode()) <= mirrored.settings.max_answer_bytes
    assert answer["truncated"] is True
    assert answer["bug"]["actual_result"].startswith("It crashes. It crashes.")
    assert answer["bug"]["id"] == bug_id
