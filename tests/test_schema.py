"""The published schemas: answers with nullable fields as `anyOf` of single types, no generated
titles, list items in place, answers that still validate against them; list arguments that
take one value; descriptions without indentation."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import pytest
from jsonschema.validators import validator_for
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from testio_mirror.schema import (
    CompactSchema,
    OneOrMany,
    inline_list,
    tool_description,
)
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


def test_optional_fields_are_an_any_of_single_types_and_generated_titles_are_gone() -> None:
    schema = _schema(Item)
    nullable = [{"type": "string"}, {"type": "null"}]
    assert schema["properties"] == {
        "id": {"type": "integer"},
        "title": {"anyOf": nullable},  # a field named "title" stays a field
        "note": {"anyOf": nullable, "default": None},
    }
    assert "title" not in schema
    assert schema["required"] == ["id", "title"]
    assert '"type": [' not in json.dumps(schema)


Kind = Literal["a", "b"]


class Filters(BaseModel):
    kinds: Annotated[list[Kind] | None, Field(max_length=2), OneOrMany()] = None
    ids: Annotated[list[int], Field(max_length=3, description="ids"), OneOrMany()] = []


def test_a_list_argument_takes_one_value_and_says_so() -> None:
    assert Filters(kinds="a", ids=5).model_dump() == {"kinds": ["a"], "ids": [5]}
    assert Filters(kinds=["a", "b"], ids=[1, 2]).model_dump() == {
        "kinds": ["a", "b"],
        "ids": [1, 2],
    }
    assert Filters(kinds=None).kinds is None
    with pytest.raises(ValidationError) as refused:
        Filters(kinds="c")
    assert refused.value.errors()[0]["loc"] == ("kinds", 0)
    with pytest.raises(ValidationError):
        Filters(ids=[1, 2, 3, 4])
    properties = TypeAdapter(Filters).json_schema()["properties"]
    enum = {"enum": ["a", "b"], "type": "string"}
    assert properties["kinds"]["anyOf"] == [
        {"items": enum, "maxItems": 2, "type": "array"},
        enum,
        {"type": "null"},
    ]
    assert properties["ids"]["anyOf"] == [
        {"items": {"type": "integer"}, "maxItems": 3, "type": "array"},
        {"type": "integer"},
    ]
    assert properties["ids"]["description"] == "ids"


def test_a_tool_description_is_its_docstring_without_indentation_or_line_breaks() -> None:
    def tool() -> None:
        """List bugs newest first, filtered by product,
        tests and feature.

        Each bug names its test."""

    assert tool_description(tool) == (
        "List bugs newest first, filtered by product, tests and feature."
        "\n\nEach bug names its test."
    )


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
