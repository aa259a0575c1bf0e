"""Full-text search: words of titles, goals, descriptions and results (non-ASCII and diacritics
too), the index following updates and tombstones, filters, hostile input and limits; prefixes and
ranking over a seeded mirror."""

from __future__ import annotations

import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from testio_mirror.store.bugs import BugRepository, write_bugs
from testio_mirror.store.exploratory_tests import tombstone_tests, write_tests
from testio_mirror.store.features import write_features
from testio_mirror.store.products import write_products
from testio_mirror.store.readthrough.freshness import FreshnessPolicy
from testio_mirror.store.records import BugFilter
from testio_mirror.store.search import MAX_LIMIT, SearchRepository, fts_query
from testio_mirror.store.sqlite.db import Database
from testio_mirror.upstream.models import Bug, ExploratoryTest, Feature, Product
from tests.helpers.seeded_mirror import Seeded
from tests.helpers.store_data import STAMP_1, STAMP_2, STAMP_3, open_database

BUG_TITLES = {
    1: "Größe der Schrift falsch",
    2: "Le réglage du volume est ignoré",
    3: "お気に入り が消える",
    4: "Checkout button overlaps the footer",
}
HOSTILE = [
    '"',
    '"unterminated',
    "NEAR(",
    "NEAR(checkout footer, 2)",
    "*",
    "check*",
    "title:",
    "title:checkout",
    "-",
    "-checkout",
    "OR",
    "checkout OR",
    "AND NOT",
    "",
    "   ",
    "!!!?.,;",
    "^checkout",
    "(checkout",
    "{title body}: x",
    "a\x00b",
    "x" * 20_000,
    "checkout " * 5_000,
]


def bug(bug_id: int, title: str, product_id: int = 1, **extra: Any) -> Bug:
    return Bug.from_wire({"id": bug_id, "title": title, "product": {"id": product_id}, **extra})


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await open_database(tmp_path)
    async with database.transaction() as conn:
        products = [Product.from_wire({"id": pid, "name": f"P{pid}"}) for pid in (1, 2)]
        await write_products(conn, products, STAMP_1, complete=True)
        tests = [
            {"id": 10, "title": "Wishlist regression", "goal": "Find zeppelin crashes"},
            {"id": 11, "title": "Checkout regression", "goal": "Find payment bugs"},
        ]
        await write_tests(conn, [ExploratoryTest.from_wire(t) for t in tests], STAMP_1, 1)
        feature = {"id": 20, "title": "Basket", "description": "Everything about the quokka"}
        await write_features(conn, 1, [Feature.from_wire(feature)], STAMP_1)
        await write_bugs(conn, [bug(i, title) for i, title in BUG_TITLES.items()], STAMP_1)
        await write_bugs(conn, [bug(5, "Checkout freezes", 2)], STAMP_1)
    yield database
    await database.close()


@pytest.fixture
def search(db: Database) -> SearchRepository:
    return SearchRepository(db)


@pytest.fixture
def bugs(db: Database) -> BugRepository:
    return BugRepository(db, None, FreshnessPolicy(open_test_ttl=300, product_ttl=3600))


async def found(search: SearchRepository, text: str, **filters: Any) -> list[tuple[str, int]]:
    return sorted((hit.kind, hit.id) for hit in await search.search(text, **filters))


async def bug_ids(bugs: BugRepository, text: str) -> list[int]:
    return sorted(b.id for b in (await bugs.list_bugs(BugFilter(text=text))).items)


@pytest.mark.parametrize(
    ("text", "bug_id"),
    [
        ("größe", 1),
        ("GRÖßE", 1),
        ("grosse schrift", []),  # ß is not folded to ss: no match, and no error
        ("reglage", 2),
        ("réglage", 2),
        ("REGLAGE volume", 2),
        ("ignore", 2),
        ("お気に入り", 3),
        ("お気", 3),
        ("overlap footer", 4),
    ],
)
async def test_a_bug_is_found_by_a_word_of_its_title(
    search: SearchRepository, bugs: BugRepository, text: str, bug_id: int | list[int]
) -> None:
    expected = [bug_id] if isinstance(bug_id, int) else bug_id
    assert await found(search, text) == [("bug", i) for i in expected]
    assert await bug_ids(bugs, text) == expected


async def test_diacritics_are_ignored_in_decomposed_input(
    search: SearchRepository, bugs: BugRepository
) -> None:
    # "réglage" as some keyboards and file names send it: "e" followed by a combining accent.
    decomposed = unicodedata.normalize("NFD", "réglage")
    assert decomposed != "réglage"
    assert await found(search, decomposed) == [("bug", 2)]
    assert await bug_ids(bugs, decomposed) == [2]


async def test_results_carry_kind_product_title_and_snippet(search: SearchRepository) -> None:
    hits = await search.search("checkout")
    assert sorted((h.kind, h.id, h.product_id) for h in hits) == [
        ("bug", 4, 1),
        ("bug", 5, 2),
        ("test", 11, 1),
    ]
    by_id = {h.id: h for h in hits}
    assert by_id[4].title == BUG_TITLES[4]
    assert "[Checkout]" in by_id[4].snippet
    assert hits == sorted(hits, key=lambda h: h.rank)


async def test_tests_by_goal_and_features_by_description(search: SearchRepository) -> None:
    assert await found(search, "zeppelin") == [("test", 10)]
    assert await found(search, "quokka") == [("feature", 20)]
    assert await found(search, "basket") == [("feature", 20)]


async def test_kinds_and_product_filters(search: SearchRepository) -> None:
    assert await found(search, "checkout", kinds=["bug"]) == [("bug", 4), ("bug", 5)]
    assert await found(search, "checkout", kinds=["test"]) == [("test", 11)]
    assert await found(search, "checkout", kinds=["feature"]) == []
    assert await found(search, "checkout", product_id=2) == [("bug", 5)]
    assert await found(search, "checkout", kinds=["bug"], product_id=1) == [("bug", 4)]
    assert await found(search, "checkout", kinds=["nonsense"]) == []  # type: ignore[list-item]


async def test_tombstoned_entities_leave_the_index_and_come_back(
    db: Database, search: SearchRepository, bugs: BugRepository
) -> None:
    async with db.transaction() as conn:
        await tombstone_tests(conn, [10], STAMP_2)
        await write_features(conn, 1, [], STAMP_2)
        await conn.execute("UPDATE tests SET bugs_fetched_at = ? WHERE id = 10", (STAMP_2,))
        await write_bugs(conn, [bug(4, BUG_TITLES[4], test={"id": 10})], STAMP_2)
        await write_bugs(conn, [], STAMP_2, complete_for_tests=[10])
    assert await found(search, "zeppelin") == []
    assert await found(search, "quokka") == []
    assert await found(search, "overlaps") == []
    assert await bug_ids(bugs, "overlaps") == []
    async with db.transaction() as conn:
        await write_tests(
            conn, [ExploratoryTest.from_wire({"id": 10, "goal": "zeppelin"})], STAMP_3, 1
        )
        feature = {"id": 20, "title": "Basket", "description": "Everything about the quokka"}
        await write_features(conn, 1, [Feature.from_wire(feature)], STAMP_3)
        await write_bugs(conn, [bug(4, BUG_TITLES[4], test={"id": 10})], STAMP_3)
    assert await found(search, "zeppelin") == [("test", 10)]
    assert await found(search, "quokka") == [("feature", 20)]
    assert await found(search, "overlaps") == [("bug", 4)]
    assert await bug_ids(bugs, "overlaps") == [4]


async def test_an_updated_title_is_found_by_its_new_word_only(
    db: Database, search: SearchRepository, bugs: BugRepository
) -> None:
    async with db.transaction() as conn:
        await write_bugs(conn, [bug(4, "Checkout button flickers")], STAMP_2)
        renamed = {"id": 11, "title": "Payment smoke test", "goal": "Find payment bugs"}
        await write_tests(conn, [ExploratoryTest.from_wire(renamed)], STAMP_2, 1)
    assert await found(search, "flickers") == [("bug", 4)]
    assert await found(search, "overlaps") == []
    assert await bug_ids(bugs, "overlaps") == []
    assert await found(search, "smoke") == [("test", 11)]
    assert await found(search, "checkout", kinds=["test"]) == []


@pytest.mark.parametrize("text", HOSTILE)
async def test_hostile_input_never_raises(
    search: SearchRepository, bugs: BugRepository, text: str
) -> None:
    hits = await search.search(text)
    assert isinstance(hits, list)
    page = await bugs.list_bugs(BugFilter(text=text))
    assert isinstance(page.items, list)
    if not fts_query(text):
        assert hits == []
        assert page.items == []  # no searchable word matches nothing, not everything


def test_fts_query_quotes_each_word() -> None:
    assert fts_query('foo "bar" NEAR(x* title:y -z OR') == (
        '"foo"* "bar"* "NEAR"* "x"* "title"* "y"* "z"* "OR"*'
    )
    assert fts_query("Größe réglage") == '"Größe"* "réglage"*'
    assert fts_query("") is None
    assert fts_query(' !?*-()":') is None
    assert fts_query(" ".join(f"w{i}" for i in range(50))) == " ".join(
        f'"w{i}"*' for i in range(32)
    )


async def test_limit_is_capped(db: Database, search: SearchRepository) -> None:
    async with db.transaction() as conn:
        many = [bug(1000 + i, f"Crowded screen {i}") for i in range(MAX_LIMIT + 20)]
        await write_bugs(conn, many, STAMP_2)
    assert MAX_LIMIT == 100
    assert len(await search.search("crowded", limit=10_000)) == MAX_LIMIT
    assert len(await search.search("crowded", limit=7)) == 7
    assert len(await search.search("crowded", limit=0)) == 1
    assert len(await search.search("crowded")) == 20


async def write_crafted_bugs(seeded: Seeded, titles: dict[int, tuple[str, str]]) -> None:
    """Bugs with the given (title, actual result), filed under the first test."""
    test = seeded.snap["tests"][min(seeded.snap["tests"])]
    bugs = [
        Bug.from_wire(
            {"id": bug_id, "title": title, "actual_result": body, "test": {"id": test["id"]}}
        )
        for bug_id, (title, body) in titles.items()
    ]
    async with seeded.mirror.db.transaction() as conn:
        await write_bugs(conn, bugs, seeded.mirror.policy.stamp())


# Every crafted row holds twelve words, so no row wins by being shorter.
FILLER = "while scrolling the long page the banner near the"
CRAFTED = {
    990_000_001: ("Banner flickers", f"{FILLER} kaleidoscope"),
    990_000_002: ("Kaleidoscope flickers", f"{FILLER} footer"),
    990_000_003: ("Footer overlaps", f"{FILLER} Kaleidoscopes"),
}


async def test_search_matches_every_word_as_a_prefix(seeded: Seeded) -> None:
    await write_crafted_bugs(seeded, CRAFTED)
    hits = await seeded.mirror.search.search("kaleidoscope", kinds=["bug"])
    assert {h.id for h in hits} == set(CRAFTED)
    assert [h.id for h in await seeded.mirror.search.search("overlaps kaleidoscope")] == [
        990_000_003
    ]
    assert await seeded.mirror.search.search("kaleidoscope", kinds=["test", "feature"]) == []
    matched = await seeded.mirror.bugs.list_bugs(BugFilter(text="KALEIDOSCOPE"))
    assert {b.id for b in matched.items} == set(CRAFTED)


async def test_search_ranks_a_title_match_before_body_matches(seeded: Seeded) -> None:
    # bm25 weighs title and body alike: the title match only ties with the others.
    await write_crafted_bugs(seeded, CRAFTED)
    hits = await seeded.mirror.search.search("kaleidoscope", kinds=["bug"])
    assert hits[0].id == 990_000_002
    assert hits[0].rank < min(h.rank for h in hits[1:])


async def test_hits_name_their_product_and_a_bug_its_severity_status_and_test(
    seeded: Seeded,
) -> None:
    snap = seeded.snap
    target = snap["bugs"][min(snap["bugs"])]
    twin_test = max(t for t in snap["tests"] if t != target["test"]["id"])
    twins = {
        990_000_011: ("Twin crash kaleidoscope", target["test"]["id"], "critical"),
        990_000_012: ("Twin crash kaleidoscope", twin_test, "low"),
    }
    bugs = [
        Bug.from_wire(
            {
                "id": bug_id,
                "title": title,
                "test": {"id": test_id},
                "severity": severity,
                "status": "rejected" if severity == "low" else "accepted",
            }
        )
        for bug_id, (title, test_id, severity) in twins.items()
    ]
    async with seeded.mirror.db.transaction() as conn:
        await write_bugs(conn, bugs, seeded.mirror.policy.stamp())
    hits = {h.id: h for h in await seeded.mirror.search.search("twin kaleidoscope")}
    assert set(hits) == set(twins)
    for bug_id, (_title, test_id, severity) in twins.items():
        hit = hits[bug_id]
        test = snap["tests"][test_id]
        assert hit.product_id == test["product"]["id"]
        assert hit.product_name == snap["products"][test["product"]["id"]]["name"]
        assert hit.severity == severity
        assert hit.status == ("rejected" if severity == "low" else "accepted")
        assert (hit.test_id, hit.test_title) == (test_id, test["title"])
    test = snap["tests"][twin_test]
    found = await seeded.mirror.search.search(test["title"], kinds=["test"])
    mine = next(h for h in found if h.id == twin_test)
    assert (mine.status, mine.test_id, mine.test_title) == (
        test["status"],
        twin_test,
        test["title"],
    )
    assert mine.severity is None
    assert mine.product_name == snap["products"][test["product"]["id"]]["name"]


async def test_pages_of_hits_lose_and_repeat_nothing(
    db: Database, search: SearchRepository
) -> None:
    async with db.transaction() as conn:
        await write_bugs(conn, [bug(2000 + i, f"Paged screen {i}") for i in range(23)], STAMP_2)
    whole = [h.id for h in await search.search("paged", limit=100)]
    seen: list[int] = []
    cursor = None
    for _ in range(10):
        page = await search.search_page("paged", limit=5, cursor=cursor)
        seen.extend(h.id for h in page.hits)
        assert len(page.cursors) == len(page.hits)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == whole
    assert len(whole) == 23
    first = await search.search_page("paged", limit=5)
    after_second = await search.search_page("paged", limit=3, cursor=first.cursors[1])
    assert [h.id for h in after_second.hits] == whole[2:5]
