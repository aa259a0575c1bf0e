"""Custom report fields over MCP after one sync with bugs: get_bug shows them, list_bugs filters
on them and shows them with detail="full", query_metrics groups by them (custom_field:<key>)
and computes count, sum, mean, min and max of the numeric ones, every value worked out again
from the sandbox snapshot's ``report`` (blank and non-numeric values left out)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from testio_mirror.sandbox import DatasetSpec
from tests.helpers.expected_metrics import (
    FIELD_KINDS,
    as_table,
    every_row,
    expected,
    metrics_for,
    report_fields,
)
from tests.helpers.mcp_session import (
    JSON,
    Mirrored,
    call,
    call_error,
    connect,
    pages,
    synced_sandbox,
)

DATASET = DatasetSpec(
    seed=23, products=4, section_products=1, tests_per_product=30, bugs_per_test=4
)
# Every kind over one numeric field, some over another and over one of words (24 at most).
FIELD_METRICS = [
    *(f"field_{kind}:affected_users" for kind in FIELD_KINDS),
    "field_mean:steps_to_reproduce_count", "field_max:steps_to_reproduce_count",
    "field_count:customer_impact", "field_mean:customer_impact",
]  # fmt: skip


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mirrored]:
    with synced_sandbox(DATASET, tmp_path_factory.mktemp("fields"), include_bugs=True) as m:
        yield m


def _bugs(mirrored: Mirrored) -> list[JSON]:
    return list(mirrored.truth["bugs"].values())


DIMENSION_SETS = [
    (),
    ("custom_field:customer_impact",),
    ("custom_field:found_in_release",),
    ("custom_field:customer_impact", "product"),
    ("month", "custom_field:found_in_release"),
    ("custom_field:customer_impact", "custom_field:found_in_release"),
    ("severity", "custom_field:customer_impact"),
    ("custom_field:steps_to_reproduce_count", "device_category"),
    ("product",),
]


@pytest.mark.parametrize("dimensions", DIMENSION_SETS, ids=lambda d: "+".join(d) or "none")
async def test_fields_as_dimensions_and_metrics_match_the_snapshot(
    mirrored: Mirrored, dimensions: tuple[str, ...]
) -> None:
    metrics = [*metrics_for((*dimensions, "severity")), *FIELD_METRICS]
    args: JSON = {"metrics": metrics, "dimensions": list(dimensions)}
    async with connect(mirrored.settings) as client:
        rows, first = await every_row(client, args)
    assert as_table(rows, dimensions) == expected(mirrored, metrics, dimensions, {})
    assert first["totals"] == expected(mirrored, metrics, (), {})[()]


def filters(mirrored: Mirrored) -> list[JSON]:
    bugs = _bugs(mirrored)
    reporting = sorted({b["product"]["id"] for b in bugs if b.get("report")})
    return [
        {"product_ids": reporting[:1]},
        {"status": ["rejected"], "severity": ["low", "high", "critical"]},
        {"since": "2026-09-01T00:00:00Z", "until": "2026-11-01T00:00:00Z"},
        {"testing_type": ["coverage", "focused"], "known": True},
    ]


@pytest.mark.parametrize("which", range(4))
@pytest.mark.parametrize(
    "dimensions", [("custom_field:customer_impact",), ("platform", "custom_field:found_in_release")]
)
async def test_filters_choose_what_the_snapshot_says(
    mirrored: Mirrored, which: int, dimensions: tuple[str, ...]
) -> None:
    chosen = filters(mirrored)[which]
    metrics = ["bug_count", "acceptance_rate", *FIELD_METRICS]
    args: JSON = {"metrics": metrics, "dimensions": list(dimensions), **chosen}
    async with connect(mirrored.settings) as client:
        rows, first = await every_row(client, args)
    assert as_table(rows, dimensions) == expected(mirrored, metrics, dimensions, chosen)
    assert first["totals"] == expected(mirrored, metrics, (), chosen)[()]


async def test_blank_and_words_are_left_out_of_numeric_metrics(mirrored: Mirrored) -> None:
    reports = [report_fields(b) for b in _bugs(mirrored) if b.get("report")]
    blank = sum(r["affected_users"] == "" for r in reports)
    assert blank, "the sandbox leaves some affected_users blank"
    numbers = [float(r["affected_users"]) for r in reports if r["affected_users"] != ""]
    metrics = [f"field_{kind}:affected_users" for kind in FIELD_KINDS]
    words = [f"field_{kind}:customer_impact" for kind in FIELD_KINDS]
    async with connect(mirrored.settings) as client:
        totals = (await call(client, "query_metrics", {"metrics": [*metrics, *words]}))["totals"]
    assert totals["field_count:affected_users"] == len(numbers) == len(reports) - blank
    assert totals["field_mean:affected_users"] == round(sum(numbers) / len(numbers), 4)
    assert totals["field_min:affected_users"] == min(numbers)
    assert totals["field_max:affected_users"] == max(numbers)
    assert totals["field_count:customer_impact"] == 0
    assert totals["field_mean:customer_impact"] is None
    assert totals["field_max:customer_impact"] is None


async def test_sorting_by_a_field_metric(mirrored: Mirrored) -> None:
    args: JSON = {
        "metrics": ["field_mean:affected_users", "bug_count"],
        "dimensions": ["custom_field:customer_impact"],
        "sort_by": "field_mean:affected_users",
    }
    async with connect(mirrored.settings) as client:
        rows = (await call(client, "query_metrics", args))["rows"]
        by_value = await call(
            client, "query_metrics", {**args, "sort_by": "custom_field:customer_impact"}
        )
    means = [row["values"]["field_mean:affected_users"] for row in rows]
    present = [m for m in means if m is not None]
    assert present == sorted(present, reverse=True)
    assert means[: len(present)] == present, "nulls last"
    impacts = [row["group"]["custom_field:customer_impact"] for row in by_value["rows"]]
    assert impacts == ["high", "low", "medium", None]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            {"metrics": ["field_mean:planet_size"]},
            "no bug in the mirror has the custom field 'planet_size'; known keys: "
            "affected_users, build_number, customer_impact, found_in_release, "
            "steps_to_reproduce_count",
        ),
        (
            {"metrics": ["bug_count"], "dimensions": ["custom_field:planet"]},
            "known keys: affected_users",
        ),
        ({"metrics": ["field_median:affected_users"]}, "expected one of test_count"),
        ({"metrics": ["bug_count"], "dimensions": ["custom_field:Bad Key"]}, "expected"),
        (
            {"metrics": ["test_count"], "dimensions": ["custom_field:customer_impact"]},
            "drop the dimension",
        ),
    ],
)
async def test_what_cannot_be_answered_says_what_can(
    mirrored: Mirrored, args: JSON, says: str
) -> None:
    async with connect(mirrored.settings) as client:
        text = await call_error(client, "query_metrics", args)
    assert says in text


async def test_get_bug_shows_the_report(mirrored: Mirrored) -> None:
    with_report = next(b for b in _bugs(mirrored) if b.get("report"))
    without = next(b for b in _bugs(mirrored) if not b.get("report"))
    async with connect(mirrored.settings) as client:
        shown = (await call(client, "get_bug", {"bug_id": with_report["id"]}))["bug"]
        plain = (await call(client, "get_bug", {"bug_id": without["id"]}))["bug"]
    data = with_report["report"]["content"]["data"]
    assert shown["custom_fields"] == sorted(
        ({"key": e["key"], "value": e["value"]} for e in data), key=lambda f: f["key"]
    )
    assert (
        shown["custom_report_configuration_id"]
        == (with_report["report"]["custom_report_configuration_id"])
    )
    assert plain["custom_fields"] == []
    assert plain.get("custom_report_configuration_id") is None


@pytest.mark.parametrize(
    ("field", "value"),
    [("customer_impact", "high"), ("found_in_release", "2.4"), ("affected_users", "120"),
     ("affected_users", ""), ("build_number", "1000000")],
)  # fmt: skip
async def test_list_bugs_filters_on_a_field(mirrored: Mirrored, field: str, value: str) -> None:
    def matches(bug: JSON) -> bool:
        found = report_fields(bug).get(field)
        return found == value if value else found not in (None, "")

    want = {b["id"] for b in _bugs(mirrored) if matches(b)}
    args: JSON = {"field": field, "field_value": value, "limit": 100}
    async with connect(mirrored.settings) as client:
        found = await pages(client, "list_bugs", args, "bugs")
        product = next(iter(sorted({b["product"]["id"] for b in _bugs(mirrored)})))
        narrowed = await pages(client, "list_bugs", {**args, "product_id": product}, "bugs")
    assert {b["id"] for b in found} == want
    assert {b["id"] for b in narrowed} == {
        b["id"] for b in _bugs(mirrored) if matches(b) and b["product"]["id"] == product
    }
    assert all("custom_fields" not in b for b in found), "concise leaves the fields out"
    assert all("custom_report_configuration_id" not in b for b in found)
    if value != "1000000":
        assert want, "the case should match some bugs"


async def test_list_bugs_full_shows_fields_and_refuses_what_it_cannot_match(
    mirrored: Mirrored,
) -> None:
    async with connect(mirrored.settings) as client:
        full = await call(
            client,
            "list_bugs",
            {"field": "customer_impact", "field_value": "low", "detail": "full", "limit": 5},
        )
        unknown = await call_error(client, "list_bugs", {"field": "planet"})
        alone = await call_error(client, "list_bugs", {"field_value": "high"})
        refused = await call_error(client, "list_bugs", {"field": "Customer Impact"})
        # A value that is JSON text stays text (the argument is a plain str).
        number = await call(client, "list_bugs", {"field": "affected_users", "field_value": "5"})
    truth = mirrored.truth["bugs"]
    for bug in full["bugs"]:
        fields = {f["key"]: f["value"] for f in bug["custom_fields"]}
        assert fields == report_fields(truth[bug["id"]])
        assert fields["customer_impact"] == "low"
        configuration = truth[bug["id"]]["report"]["custom_report_configuration_id"]
        assert bug["custom_report_configuration_id"] == configuration
    assert len(full["bugs"]) == 5
    assert "known keys: affected_users" in unknown
    assert "field_value needs field" in alone
    assert "field" in refused
    assert number["bugs"]
    assert all(report_fields(truth[b["id"]])["affected_users"] == "5" for b in number["bugs"])


async def test_the_definitions_resource_names_the_field_patterns(mirrored: Mirrored) -> None:
    async with connect(mirrored.settings) as client:
        found = await client.read_resource("testio://metrics/definitions")
    body = json.loads(found.contents[0].text)  # type: ignore[union-attr]
    assert body["custom_field_patterns"] == {
        "dimension": "^custom_field:[a-z0-9_]{1,64}$",
        "metric": "^field_(count|sum|mean|min|max):[a-z0-9_]{1,64}$",
    }
    assert [m["name"] for m in body["field_metrics"]] == [
        f"field_{kind}:<key>" for kind in FIELD_KINDS
    ]
    dimensions = {d["name"]: d for d in body["dimensions"]}
    assert dimensions["custom_field:<key>"]["applies_to"] == "bugs only"
    assert {"platform", "browser", "device_category"} <= set(dimensions)
