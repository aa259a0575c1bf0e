"""``refused_arguments`` on schema shapes no tool is built for: a plain list whose items are a
union, an enum or a pattern, and a long enum. What it says comes from the schema alone."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field, ValidationError

from testio_mirror.schema import OneOrMany
from testio_mirror.server.errors import refused_arguments

Colour = Literal["red", "green", "blue"]
Code = Annotated[str, Field(pattern=r"^sku-[0-9]{3,8}$")]
Many = Literal[tuple(f"v{n}" for n in range(30))]  # type: ignore[valid-type]


class Arguments(BaseModel):
    tags: Annotated[list[Colour | Code], Field(min_length=1, max_length=3)] = ["red"]
    colours: Annotated[list[Colour], Field(max_length=2)] = []
    codes: Annotated[list[Code], Field(min_length=2)] = ["sku-123", "sku-456"]
    pick: Annotated[list[Many] | None, Field(max_length=4), OneOrMany()] = None
    odd: Annotated[str, Field(pattern=r"^(a|b)+\d?$")] = "a"


def refusal(arguments: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as refused:
        Arguments.model_validate(arguments)
    return refused_arguments(refused.value, Arguments.model_json_schema(), arguments)


def test_a_list_of_a_union_refused_whole_names_both_branches() -> None:
    # A string where only a list is taken: its kind is the mistake, so it is said.
    assert refusal({"tags": "red"}) == (
        'invalid arguments: tags was "red" (a string), expected a list of 1 to 3 items, '
        "each one of red, green, blue or sku-<3 to 8 of [0-9]>"
    )


def test_an_item_refused_is_shown_alone() -> None:
    assert refusal({"tags": ["red", 7]}) == (
        "invalid arguments: tags[1] was 7 (a number), expected one of red, green, blue "
        "or sku-<3 to 8 of [0-9]>"
    )


def test_a_list_of_an_enum_too_long() -> None:
    assert refusal({"colours": ["red"] * 3}) == (
        'invalid arguments: colours was ["red", "red", "red"], expected a list of up to 2 '
        "items, each one of red, green, blue"
    )


def test_a_list_of_a_pattern_too_short() -> None:
    assert refusal({"codes": ["sku-123"]}) == (
        'invalid arguments: codes was ["sku-123"], expected a list of at least 2 items, each '
        "sku-<3 to 8 of [0-9]>"
    )


def test_a_long_enum_is_cut() -> None:
    text = refusal({"pick": "v99"})
    assert text.startswith('invalid arguments: pick was "v99", expected one of v0, ')
    assert "v19 (and 10 more in the tool's schema), or a list of up to 4 of them" in text, text
    assert "v20" not in text, text


def test_a_pattern_too_rich_to_read_is_shown_as_it_is() -> None:
    assert refusal({"odd": "c"}) == (
        'invalid arguments: odd was "c", expected text matching ^(a|b)+\\d?$'
    )


def test_many_items_refused_alike_are_counted() -> None:
    # Seven bad items, strings and numbers, all expected to be the same: five named, two counted.
    text = refusal({"codes": [f"x{n}" for n in range(5)] + [1, 2]})
    assert text == (
        'invalid arguments: codes[0] was "x0", codes[1] was "x1", codes[2] was "x2", '
        'codes[3] was "x3", codes[4] was "x4" and 2 more like them, expected sku-<3 to 8 of '
        "[0-9]>"
    ), text
