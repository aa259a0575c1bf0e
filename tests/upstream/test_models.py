"""Wire models: tolerant reading, raw JSON kept (unknown fields included), UTC dates, helpers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from testio_mirror.upstream.errors import BadResponseError
from testio_mirror.upstream.models import (
    Bug,
    ExploratoryTest,
    Feature,
    Product,
    RejectReason,
    Section,
    UserStory,
    WireModel,
    WirePart,
)

INSTANT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
EVERY_MODEL: list[tuple[type[WireModel], dict[str, Any]]] = [
    (Product, {"id": 1}),
    (Feature, {"id": 1}),
    (UserStory, {"id": 1}),
    (ExploratoryTest, {"id": 1}),
    (Bug, {"id": 1}),
    (RejectReason, {"key": "dup"}),
]
EVERY_PART: list[tuple[type[WirePart], dict[str, Any]]] = [
    (Section, {"id": 1}),
]


@pytest.mark.parametrize(("model", "minimal"), EVERY_MODEL)
def test_unknown_fields_are_kept_in_raw_which_is_the_input(
    model: type[WireModel], minimal: dict[str, Any]
) -> None:
    data = {**minimal, "brand_new": {"nested": [1, 2]}, "flag": None}
    item = model.from_wire(data)
    assert item.raw == data
    assert item.raw is data  # kept as received, not rebuilt
    assert "brand_new" not in type(item).model_fields


@pytest.mark.parametrize(("part", "minimal"), EVERY_PART)
def test_parts_read_what_they_name_and_their_json_stays_in_the_entity(
    part: type[WirePart], minimal: dict[str, Any]
) -> None:
    data = {**minimal, "brand_new": [1], "flag": None}
    read = part.model_validate(data)
    assert read.model_dump(include=set(minimal)) == minimal
    product = Product.from_wire({"id": 7, "sections": [data]})
    assert product.raw["sections"] == [data]


def test_test_references_become_ids_and_features_stay_plain_with_their_json_in_raw() -> None:
    feature = {"id": 31, "feature_id": 32, "title": {"name": "Cart"}, "user_stories": ["x"]}
    data = {
        "id": 7,
        "product": {"id": 12, "name": "Shop"},
        "section": {"id": 13, "name": "Web"},
        "test_environment": {"id": 14},
        "features": [feature],
        "requirements": [{"id": 1}],
    }
    test = ExploratoryTest.from_wire(data)
    assert (test.product_id, test.section_id) == (12, 13)
    assert test.features == [{"id": 31, "feature_id": 32, "title": "Cart"}]
    assert test.raw == data


def test_bug_references_become_ids_and_comments_stay_plain_with_their_json_in_raw() -> None:
    comment = {"id": 9, "body": "dup", "author": {"name": "Ana", "role": "customer"}, "x": 1}
    data = {
        "id": 7,
        "test": {"id": 11, "title": "Checkout"},
        "product": {"id": 12, "name": "Shop"},
        "feature": {"id": 13, "title": "Cart"},
        "author": {"name": "tester_ana", "country": "PT"},
        "comments": [comment],
    }
    bug = Bug.from_wire(data)
    assert (bug.test_id, bug.product_id, bug.feature_id, bug.author_name) == (
        11,
        12,
        13,
        "tester_ana",
    )
    assert bug.comments == [{"id": 9, "body": "dup", "author": {"name": "Ana"}}]
    assert bug.raw["comments"] == [comment]
    assert bug.raw["author"] == data["author"]


@pytest.mark.parametrize("reference", [None, "text", [1], {}, {"name": "no id"}])
def test_a_bug_reference_without_an_id_reads_as_none(reference: Any) -> None:
    bug = Bug.from_wire({"id": 1, "test": reference, "product": reference, "feature": reference})
    assert (bug.test_id, bug.product_id, bug.feature_id) == (None, None, None)


def test_a_bug_reference_with_an_unusable_id_is_a_bad_response() -> None:
    with pytest.raises(BadResponseError, match=r"unusable Bug: test\.id"):
        Bug.from_wire({"id": 1, "test": {"id": "not a number"}})


@pytest.mark.parametrize("model", [m for m, _ in EVERY_MODEL])
@pytest.mark.parametrize("data", [[], "text", None, 5, [{"id": 1}]])
def test_from_wire_of_a_non_object_is_a_bad_response(model: type[WireModel], data: Any) -> None:
    with pytest.raises(BadResponseError, match=model.__name__):
        model.from_wire(data)


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (Product, {"name": "x"}),
        (Product, {"id": 1, "sections": [{"name": "no id"}]}),
        (Feature, {}),
        (UserStory, {"title": "x"}),
        (ExploratoryTest, {"test_title": "x"}),
        (Bug, {"title": "x"}),
        (Bug, {"id": "not a number"}),
        (RejectReason, {"name": "Duplicate"}),
    ],
)
def test_from_wire_without_a_usable_id_is_a_bad_response(
    model: type[WireModel], data: dict[str, Any]
) -> None:
    with pytest.raises(BadResponseError, match=f"unusable {model.__name__}"):
        model.from_wire(data)


def test_missing_optional_fields_are_none_or_empty() -> None:
    bug = Bug.from_wire({"id": 3})
    assert (bug.title, bug.severity, bug.status, bug.reported_at, bug.author_name) == (None,) * 5
    assert (bug.steps, bug.comments) == ([], [])
    assert (bug.test_id, bug.product_id, bug.feature_id) == (None, None, None)
    test = ExploratoryTest.from_wire({"id": 4})
    assert (test.title, test.goal, test.start_at, test.product_id, test.section_id) == (None,) * 5
    assert test.features == []
    product = Product.from_wire({"id": 5})
    assert (product.name, product.sections, product.sections_with_default) == (None, [], [])


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-02T03:04:05Z",
        "2026-01-02T05:04:05+02:00",
        "2026-01-01T22:04:05-05:00",
        "2026-01-02T03:04:05.000Z",
        "2026-01-02T03:04:05",
        " 2026-01-02T03:04:05+00:00 ",
        "2026-01-02t03:04:05z",
    ],
)
def test_dates_become_aware_utc(text: str) -> None:
    test = ExploratoryTest.from_wire({"id": 1, "start_at": text, "end_at": text})
    assert test.start_at == INSTANT
    assert test.start_at is not None
    assert test.start_at.utcoffset() == timedelta(0)
    assert test.start_at.tzinfo is UTC
    assert test.raw["start_at"] == text


def test_fractional_seconds_are_kept() -> None:
    bug = Bug.from_wire({"id": 1, "reported_at": "2026-01-02T05:04:05.25+02:00"})
    assert bug.reported_at == INSTANT + timedelta(milliseconds=250)


@pytest.mark.parametrize("value", ["yesterday", "2026-13-45T00:00:00Z", "", 1767323045, None])
def test_unreadable_dates_become_none(value: Any) -> None:
    bug = Bug.from_wire({"id": 1, "reported_at": value, "exported_at": value})
    assert (bug.reported_at, bug.exported_at) == (None, None)
    assert bug.raw["reported_at"] == value


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (["Open", "Tap"], ["Open", "Tap"]),
        ("Open\nTap\n\n  Crash  \r\n", ["Open", "Tap", "Crash"]),
        ([1, None, "Tap"], ["1", "Tap"]),
        (None, []),
        ("", []),
    ],
)
def test_steps_become_a_list_of_text(steps: Any, expected: list[str]) -> None:
    assert Bug.from_wire({"id": 1, "steps": steps}).steps == expected


def test_null_lists_become_empty() -> None:
    bug = Bug.from_wire({"id": 1, "comments": None, "devices": None, "attachments": None})
    assert bug.comments == []
    assert (bug.raw["devices"], bug.raw["attachments"]) == (None, None)
    test = ExploratoryTest.from_wire({"id": 1, "features": None, "requirements": None})
    assert test.features == []
    product = Product.from_wire({"id": 1, "sections": None, "sections_with_default": None})
    assert (product.sections, product.sections_with_default) == ([], [])
    assert Feature.from_wire({"id": 1, "user_stories": None}).user_stories == []


def test_test_reads_the_long_field_names() -> None:
    data = {
        "id": 1,
        "test_title": "Login",
        "goal_text": "Find crashes",
        "instructions_text": "Use the app",
        "out_of_scope_text": "Payments",
        "product": {"id": 9, "name": "Shop"},
    }
    test = ExploratoryTest.from_wire(data)
    assert (test.title, test.goal) == ("Login", "Find crashes")
    assert (test.instructions, test.out_of_scope) == ("Use the app", "Payments")
    assert test.product_id == 9
    assert test.raw == data  # the copy made for the aliases does not leak into raw
    both = ExploratoryTest.from_wire({"id": 2, "title": "Short", "test_title": "Long"})
    assert both.title == "Short"


def test_names_sent_as_objects_keep_the_readable_part() -> None:
    assert Section.model_validate({"id": 1, "name": {"name": "Checkout"}}).name == "Checkout"
    assert Feature.from_wire({"id": 1, "title": {"title": "Search"}}).title == "Search"


@pytest.mark.parametrize(
    ("status", "final"),
    [("archived", True), ("cancelled", True), ("running", False), ("locked", False), (None, False)],
)
def test_is_final(status: str | None, final: bool) -> None:
    assert ExploratoryTest.from_wire({"id": 1, "status": status}).is_final is final


@pytest.mark.parametrize(
    ("sections", "with_default", "has", "ids"),
    [
        ([], [], False, []),
        ([], [7], False, [7]),
        ([], [7, 8], True, [7, 8]),
        ([8, 9], [7, 8, 9], True, [8, 9]),
        ([8], [], True, [8]),
    ],
)
def test_product_sections(
    sections: list[int], with_default: list[int], has: bool, ids: list[int]
) -> None:
    product = Product.from_wire(
        {
            "id": 1,
            "sections": [{"id": s} for s in sections],
            "sections_with_default": [{"id": s} for s in with_default],
        }
    )
    assert product.has_sections is has
    assert product.section_ids == ids


REASONS = [
    RejectReason.from_wire({"key": "nocomment", "default_comment": None}),
    RejectReason.from_wire({"key": "duplicate", "default_comment": "This is a duplicate."}),
    RejectReason.from_wire({"key": "not_reproducible", "default_comment": " Cannot reproduce. "}),
]


@pytest.mark.parametrize(
    ("status", "bodies", "key"),
    [
        ("rejected", ["Thanks", "  Cannot reproduce. On iOS 18 either."], "not_reproducible"),
        ("rejected", ["This is a duplicate. See #4"], "duplicate"),
        ("rejected", ["This is a duplicate.", "Cannot reproduce. Reopened"], "not_reproducible"),
        ("rejected", ["We cannot reproduce this"], None),
        ("rejected", [], None),
        ("accepted", ["This is a duplicate."], None),
    ],
)
def test_reject_reason(status: str, bodies: list[str], key: str | None) -> None:
    bug = Bug.from_wire({"id": 1, "status": status, "comments": [{"body": b} for b in bodies]})
    reason = bug.reject_reason(REASONS)
    assert (reason.key if reason else None) == key


def test_a_number_out_of_range_skips_its_object_and_is_told() -> None:
    from testio_mirror.upstream.models import SKIPPED_OBJECTS, OutOfRangeError, read_each

    told: list[str] = []
    token = SKIPPED_OBJECTS.set(told)
    try:
        read = read_each(
            ExploratoryTest,
            [
                {"id": 1},
                {"id": 2**63},
                {"id": 3, "section": {"id": -(2**63) - 1}},
                {"id": 2**63 - 1},
            ],
        )
    finally:
        SKIPPED_OBJECTS.reset(token)
    assert [t.id for t in read] == [1, 2**63 - 1]
    assert len(told) == 2
    assert "a number out of range in section_id" in told[1]
    with pytest.raises(OutOfRangeError):
        ExploratoryTest.from_wire({"id": 2**64})
