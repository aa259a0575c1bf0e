"""The query tools over MCP after one sync with bugs: every answer is checked against the sandbox's
snapshot (ids, names, filters, order, paging, counts, statistics), carries freshness, and stays
small enough for a model's context."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import pytest

from testio_mirror.sandbox import DatasetSpec
from tests.helpers.expected_answers import (
    bug_matches,
    has_sections,
    newest_first,
    parse_time,
    words,
)
from tests.helpers.mcp_session import JSON, Mirrored, call, connect, pages, synced_sandbox, text_of
from tests.helpers.serving import TOOLS

DATASET = DatasetSpec(
    seed=11, products=3, section_products=1, tests_per_product=40, bugs_per_test=4
)
SECTIONED = 101  # the first product has sections
PLAIN = 102
TOKEN_BUDGET = 25_000


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mirrored]:
    """One sandbox and one mirror synced from it (with bugs) for the whole module."""
    with synced_sandbox(DATASET, tmp_path_factory.mktemp("tools"), include_bugs=True) as mirror:
        yield mirror


def bugs_of_product(truth: JSON, product_id: int) -> list[JSON]:
    return [b for b in truth["bugs"].values() if b["product"]["id"] == product_id]


def assert_fresh(answer: JSON, key: str = "freshness") -> None:
    freshness = answer[key]
    assert freshness["source"] in ("mirror", "api")
    assert freshness["as_of"] is not None
    assert freshness["stale"] is False, freshness


async def test_list_products_equals_the_sandbox(mirrored: Mirrored) -> None:
    async with connect(mirrored.settings) as client:
        answer = await call(client, "list_products")
    truth = mirrored.truth["products"]
    got = {p["id"]: p for p in answer["products"]}
    assert set(got) == set(truth)
    for pid, product in truth.items():
        assert got[pid]["name"] == product["name"]
        assert got[pid]["type"] == product["type"]
        assert got[pid]["has_sections"] == has_sections(product)
    assert got[SECTIONED]["has_sections"] is True
    assert got[PLAIN]["has_sections"] is False
    assert_fresh(answer)


@pytest.mark.parametrize("product_id", [SECTIONED, PLAIN])
async def test_list_features_equals_the_sandbox(mirrored: Mirrored, product_id: int) -> None:
    async with connect(mirrored.settings) as client:
        answer = await call(client, "list_features", {"product_id": product_id})
    truth = mirrored.truth["features"][product_id]
    assert answer["product_id"] == product_id
    got = {f["id"]: f for f in answer["features"]}
    assert set(got) == set(truth)
    assert len(answer["features"]) == len(truth)  # a feature in two sections is listed once
    for fid, feature in truth.items():
        assert got[fid]["title"] == feature["title"]
        assert got[fid]["user_stories"] == feature["user_stories"]
    assert_fresh(answer)


async def test_list_tests_filters_match_the_sandbox_newest_first(mirrored: Mirrored) -> None:
    tests = list(mirrored.truth["tests"].values())
    mine = newest_first([t for t in tests if t["product"]["id"] == PLAIN], "end_at")
    since, until = mine[30]["end_at"], mine[5]["end_at"]
    cases: list[tuple[JSON, list[JSON]]] = [
        ({"product_id": PLAIN}, mine),
        (
            {"product_id": PLAIN, "status": ["archived", "cancelled"]},
            [t for t in mine if t["status"] in ("archived", "cancelled")],
        ),
        (
            {"testing_type": "coverage"},
            newest_first([t for t in tests if t["testing_type"] == "coverage"], "end_at"),
        ),
        (
            {"product_id": PLAIN, "since": since, "until": until},
            [t for t in mine if parse_time(since) <= parse_time(t["end_at"]) < parse_time(until)],
        ),
        (
            {"product_id": PLAIN, "status": ["running"]},
            [t for t in mine if t["status"] == "running"],
        ),
    ]
    async with connect(mirrored.settings) as client:
        for args, expected in cases:
            answer = await call(client, "list_tests", {**args, "limit": 100})
            assert [t["id"] for t in answer["tests"]] == [t["id"] for t in expected], args
            assert answer["next_cursor"] is None
            assert_fresh(answer)
    assert 0 < len(cases[3][1]) < len(mine)
    assert len(cases[4][1]) == 1
    last = answer["tests"][0]
    truth = mirrored.truth["tests"][last["id"]]
    assert last["title"] == truth["title"]
    assert last["status"] == truth["status"]
    assert last["testing_type"] == truth["testing_type"]
    assert last["product_id"] == PLAIN
    assert last["product_name"] == mirrored.truth["products"][PLAIN]["name"]
    assert parse_time(last["end_at"]) == parse_time(truth["end_at"])
    assert parse_time(last["start_at"]) == parse_time(truth["start_at"])


async def test_paging_tests_returns_every_test_once_in_order(mirrored: Mirrored) -> None:
    async with connect(mirrored.settings) as client:
        seen = await pages(client, "list_tests", {"limit": 7}, "tests")
    expected = newest_first(mirrored.truth["tests"].values(), "end_at")
    assert [t["id"] for t in seen] == [t["id"] for t in expected]
    assert len({t["id"] for t in seen}) == len(mirrored.truth["tests"]) == 120


async def test_get_test_gives_fields_and_bug_counts_from_the_sandbox(mirrored: Mirrored) -> None:
    truth = mirrored.truth
    test = next(
        t for t in newest_first(truth["tests"].values(), "end_at") if t["instructions"] is not None
    )
    bugs = [b for b in truth["bugs"].values() if b["test"]["id"] == test["id"]]
    async with connect(mirrored.settings) as client:
        concise = await call(client, "get_test", {"test_id": test["id"]})
        full = await call(client, "get_test", {"test_id": test["id"], "detail": "full"})
    got = concise["test"]
    assert got["id"] == test["id"]
    assert got["title"] == test["title"]
    assert got["status"] == test["status"]
    assert got["product_id"] == test["product"]["id"]
    assert got["product_name"] == test["product"]["name"]
    assert parse_time(got["end_at"]) == parse_time(test["end_at"])
    assert "instructions" not in got  # concise: long texts are left out
    counts = concise["bug_counts"]
    assert counts["total"] == len(bugs) == DATASET.bugs_per_test
    assert counts["by_severity"] == dict(Counter(b["severity"] for b in bugs))
    assert counts["by_status"] == dict(Counter(b["status"] for b in bugs))
    assert full["bug_counts"] == counts
    assert full["test"]["goal"] == test["goal"]
    assert full["test"]["instructions"] == test["instructions"]
    assert full["test"].get("out_of_scope") == test["out_of_scope"]  # null: left out
    assert sorted(full["test"]["feature_ids"]) == sorted(f["feature_id"] for f in test["features"])
    assert_fresh(concise)
    assert_fresh(concise, "bugs_freshness")


async def test_list_bugs_by_severity_names_tests_and_features(mirrored: Mirrored) -> None:
    truth = mirrored.truth
    expected = newest_first(
        [b for b in bugs_of_product(truth, PLAIN) if b["severity"] == "critical"], "reported_at"
    )
    assert expected
    async with connect(mirrored.settings) as client:
        answer = await call(
            client, "list_bugs", {"product_id": PLAIN, "severity": ["critical"], "limit": 100}
        )
    assert [b["id"] for b in answer["bugs"]] == [b["id"] for b in expected]
    for got, bug in zip(answer["bugs"], expected, strict=True):
        assert got["severity"] == "critical"
        assert got["title"] == bug["title"]
        assert got["status"] == bug["status"]
        assert got["test_id"] == bug["test"]["id"]
        assert got["test_title"] == truth["tests"][bug["test"]["id"]]["title"]
        feature = bug["feature"]
        assert got["feature_id"] == (feature["id"] if feature else None)
        assert got["feature_title"] == (feature["title"] if feature else None)
        assert got["author"] == bug["author"]["name"]
        assert "steps" not in got  # concise: long texts are left out
    assert_fresh(answer)


async def test_paging_bugs_returns_every_bug_of_a_product_once(mirrored: Mirrored) -> None:
    expected = newest_first(bugs_of_product(mirrored.truth, SECTIONED), "reported_at")
    async with connect(mirrored.settings) as client:
        seen = await pages(client, "list_bugs", {"product_id": SECTIONED, "limit": 7}, "bugs")
    assert [b["id"] for b in seen] == [b["id"] for b in expected]
    assert len({b["id"] for b in seen}) == len(expected) == 40 * DATASET.bugs_per_test


async def test_get_bug_gives_steps_as_a_list(mirrored: Mirrored) -> None:
    bugs = list(mirrored.truth["bugs"].values())
    as_text = next(b for b in bugs if isinstance(b["steps"], str))
    as_list = next(b for b in bugs if isinstance(b["steps"], list))
    async with connect(mirrored.settings) as client:
        for bug in (as_text, as_list):
            answer = await call(client, "get_bug", {"bug_id": bug["id"]})
            got = answer["bug"]
            steps = bug["steps"] if isinstance(bug["steps"], list) else bug["steps"].splitlines()
            assert got["steps"] == steps
            assert got["id"] == bug["id"]
            assert got["title"] == bug["title"]
            assert got["actual_result"] == bug["actual_result"]
            assert got["expected_result"] == bug["expected_result"]
            assert got["known"] == bug["known"]
            assert got["test_title"] == mirrored.truth["tests"][bug["test"]["id"]]["title"]
            assert_fresh(answer)


async def test_search_finds_a_bug_by_the_words_of_its_title(mirrored: Mirrored) -> None:
    bugs = [b for b in bugs_of_product(mirrored.truth, PLAIN) if b["title"].isascii()]

    def matches(bug: JSON) -> set[int]:
        query = words(bug["title"])
        return {b["id"] for b in bugs_of_product(mirrored.truth, PLAIN) if bug_matches(b, query)}

    target = min(bugs, key=lambda b: (len(matches(b)), b["id"]))
    expected = matches(target)
    assert len(expected) <= 50
    async with connect(mirrored.settings) as client:
        answer = await call(
            client,
            "search",
            {"query": target["title"], "kinds": ["bug"], "product_id": PLAIN, "limit": 50},
        )
        one_word = await call(client, "search", {"query": words(target["title"])[0]})
    assert {h["id"] for h in answer["hits"]} == expected
    assert all(h["kind"] == "bug" and h["product_id"] == PLAIN for h in answer["hits"])
    hit = next(h for h in answer["hits"] if h["id"] == target["id"])
    assert hit["title"] == target["title"]
    # Enough to tell hits with one title apart without another call.
    assert hit["product_name"] == mirrored.truth["products"][PLAIN]["name"]
    assert (hit["severity"], hit["status"]) == (target["severity"], target["status"])
    assert hit["test_id"] == target["test"]["id"]
    assert hit["test_title"] == mirrored.truth["tests"][target["test"]["id"]]["title"]
    assert one_word["hits"]
    assert "hint" not in answer  # nothing more to get


async def test_bug_stats_by_severity_and_feature_match_the_sandbox(mirrored: Mirrored) -> None:
    truth = mirrored.truth
    mine = bugs_of_product(truth, PLAIN)
    async with connect(mirrored.settings) as client:
        by_severity = await call(client, "bug_stats", {"product_id": PLAIN})
        everything = await call(client, "bug_stats", {"group_by": "status"})
        by_feature = await call(client, "bug_stats", {"group_by": "feature", "product_id": PLAIN})
    groups = {g["key"]: g for g in by_severity["groups"]}
    assert set(groups) == {b["severity"] for b in mine}
    for severity, group in groups.items():
        chosen = [b for b in mine if b["severity"] == severity]
        statuses = Counter(b["status"] for b in chosen)
        assert group["total"] == len(chosen)
        assert group["accepted"] == statuses["accepted"]
        assert group["rejected"] == statuses["rejected"]
        assert group["forwarded"] == statuses["forwarded"]
    statuses = Counter(b["status"] for b in mine)
    assert by_severity["total"] == len(mine)
    decided = statuses["accepted"] + statuses["rejected"]
    assert by_severity["acceptance_rate"] == round(statuses["accepted"] / decided, 4)
    assert everything["total"] == len(truth["bugs"])
    assert {g["key"]: g["total"] for g in everything["groups"]} == dict(
        Counter(b["status"] for b in truth["bugs"].values())
    )
    titles = {fid: f["title"] for fid, f in truth["features"][PLAIN].items()}
    for group in by_feature["groups"]:
        assert group["label"] == titles[int(group["key"])]
    assert sum(g["total"] for g in by_feature["groups"]) == len(mine)
    assert_fresh(by_severity)


async def test_bug_stats_and_list_bugs_choose_the_same_bugs(mirrored: Mirrored) -> None:
    truth = mirrored.truth
    tests = sorted(truth["tests"])[::7]
    mine = [b for b in truth["bugs"].values() if b["test"]["id"] in tests]
    moments = sorted(parse_time(b["reported_at"]) for b in mine)
    since, until = moments[len(moments) // 4], moments[3 * len(moments) // 4]
    chosen = {"test_ids": tests, "since": since.isoformat(), "until": until.isoformat()}
    expected = Counter(
        b["test"]["id"] for b in mine if since <= parse_time(b["reported_at"]) < until
    )
    assert 0 < sum(expected.values()) < len(mine)
    async with connect(mirrored.settings) as client:
        stats = await call(client, "bug_stats", {"group_by": "test", **chosen})
        listed = await pages(client, "list_bugs", {**chosen, "limit": 100}, "bugs")
    assert {int(g["key"]): g["total"] for g in stats["groups"]} == expected
    assert Counter(b["test_id"] for b in listed) == expected


async def test_no_tool_asks_for_its_context(mirrored: Mirrored) -> None:
    async with connect(mirrored.settings) as client:
        tools = (await client.list_tools()).tools
    assert {tool.name for tool in tools} == TOOLS
    for tool in tools:
        # Neither the context nor a confirmation the server asks the person for (Resolve).
        properties = tool.input_schema.get("properties", {})
        assert not {"ctx", "confirmation"} & set(properties), tool.name


async def test_a_hundred_items_stay_well_under_the_token_budget(mirrored: Mirrored) -> None:
    async with connect(mirrored.settings) as client:
        tests = await client.call_tool("list_tests", {"limit": 100})
        bugs = await client.call_tool("list_bugs", {"limit": 100})
    for result, key in ((tests, "tests"), (bugs, "bugs")):
        answer = result.structured_content
        assert answer is not None
        assert len(answer[key]) == 100
        size = max(len(json.dumps(answer, ensure_ascii=False)), len(text_of(result)))
        assert size / 4 < TOKEN_BUDGET, (key, size)
