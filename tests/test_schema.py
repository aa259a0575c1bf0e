"""Output schemas of tool answers: nullable types as lists, no generated titles, list items in
place, and answers that still validate against them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import pytest
from jsonschema.validators import validator_for
from pydantic import BaseModel, TypeAdapter

from testio_mirror.schema import CompactSchema, inline_list
from testio_mirror.server.answers import Bug, BugList, ExploratoryTestList, respond
from testio_mirror.store.records import Freshness


class Item(CompactSchema):
    id: int
    title: str | None
    note: str | None = None


class Page(CompactSchema):
    items: Annotated[list[Item], inline_list(Item)]
    cursor: str | None


class Holder(CompactSchema):
    item: Item


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return TypeAdapter(model).json_schema()


def test_optional_fields_are_a_list_of_types_and_generated_titles_are_gone() -> None:
    schema = _schema(Item)
    assert schema["properties"] == {
        "id": {"type": "integer"},
        "title": {"type": ["string", "null"]},  # a field named "title" stays a field
        "note": {"default": None, "type": ["string", "null"]},
    }
    assert "title" not in schema
    assert schema["required"] == ["id", "title"]


def test_list_items_are_written_in_place() -> None:
    schema = _schema(Page)
    assert "$defs" not in schema
    assert schema["properties"]["items"] == {"type": "array", "items": _schema(Item)}
    assert "$ref" not in json.dumps(schema)


def test_a_model_that_nests_models_cannot_be_inlined() -> None:
    class Listing(CompactSchema):
        holders: Annotated[list[Holder], inline_list(Holder)]

    with pytest.raises(TypeError, match="Holder nests models"):
        TypeAdapter(Listing).json_schema()


@pytest.mark.parametrize("model", [BugList, ExploratoryTestList])
def test_answers_validate_against_their_published_schema(model: type[BaseModel]) -> None:
    schema = _schema(model)
    assert "Bug" not in schema.get("$defs", {})
    assert "ExploratoryTest" not in schema.get("$defs", {})
    freshness = Freshness(
        source="mirror", as_of=datetime(2026, 1, 1, tzinfo=UTC), age_seconds=1.0, stale=False
    )
    fields: dict[str, Any] = {"next_cursor": None, "freshness": freshness}
    if model is BugList:
        bug = Bug(
            id=1,
            title="Crash",
            severity="critical",
            status="accepted",
            known=False,
            test_id=2,
            test_title="Smoke",
            feature_id=None,
            feature_title=None,
            product_id=3,
            reported_at=None,
            author=None,
        )
        answer: BaseModel = BugList(bugs=[bug], **fields)
    else:
        answer = ExploratoryTestList(tests=[], **fields)
    data = respond(answer).structured_content
    validator = validator_for(schema)(schema)
    assert list(validator.iter_errors(data)) == []
    broken = json.loads(json.dumps(data))
    broken["next_cursor"] = 5
    assert list(validator.iter_errors(broken)), "a wrong type must fail validation"
