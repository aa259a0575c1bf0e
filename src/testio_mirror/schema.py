"""The JSON schemas the MCP tools publish: ``CompactSchema`` for answers, ``OneOrMany`` for list
arguments, ``tool_description`` for the tools' descriptions.

Every schema must read the same in every client: clients map tool schemas onto their own
dialects (the OpenAPI subset of Gemini function declarations has one ``type`` per schema) and
JavaScript reads numbers as doubles. So no ``type`` is a list (a nullable field is pydantic's
``anyOf: [{type: X}, {type: null}]``, the form the MCP Inspector's portability check asks for),
and no number is beyond ``JS_SAFE_INTEGER`` (ids are bounded by it, not by what SQLite holds).

``anyOf`` costs a validating client a little: the Python SDK's client checks every structured
answer against the output schema, and a nullable field is two schemas to it where ``type: [X,
null]`` was one (a page of 20 concise bugs: 1.0 ms before, 1.7 ms after, measured with
``jsonschema`` alone). Two trims keep that cost down: the titles pydantic generates ("Test Id"
for ``test_id``) are left out (descriptions stay), and a list of answers (the bugs of
``list_bugs``) has its item schema written in place (``inline_list``) instead of a ``$ref``
resolved for every item.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

JS_SAFE_INTEGER = 2**53 - 1  # Number.MAX_SAFE_INTEGER: larger numbers are rounded in JavaScript


class CompactSchema(BaseModel):
    """A model whose JSON schema leaves out the titles pydantic generates."""

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        definition = handler.resolve_ref_schema(schema)
        definition.pop("title", None)
        for field in definition.get("properties", {}).values():
            field.pop("title", None)
        return schema


def inline_list(item: type[BaseModel]) -> InlineList:
    """The JSON schema of a list of ``item`` with the item's schema written in place: a
    validator resolves a ``$ref`` for every item (twenty per page), which cost a tenth of
    checking a page of bugs. ``item`` must not nest models itself."""
    return InlineList(item)


class InlineList:
    """``Annotated`` metadata: see ``inline_list``. The item's schema is made when the
    list's is (when a tool is registered), not when the module is imported."""

    def __init__(self, item: type[BaseModel]) -> None:
        self.item = item

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = self.item.model_json_schema()
        if "$defs" in schema:
            raise TypeError(f"{self.item.__name__} nests models; its list cannot be inlined")
        return {"items": schema, "type": "array"}


class OneOrMany:
    """``Annotated`` metadata for a list argument (``list[X]`` or ``list[X] | None``), placed
    after its ``Field``: a single value is taken as a list of one (``status="running"`` as
    ``["running"]``), and the schema says so, ``anyOf: [{type: array, items: X}, X]`` (and
    null when the list is optional).

    Example::

        Statuses = Annotated[list[Status] | None, Field(max_length=20), OneOrMany()]
    """

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_before_validator_function(_as_list, handler(source))

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        choices = schema.pop("anyOf", None)
        if choices is None:  # a list that is not optional
            array = {key: schema.pop(key) for key in list(schema) if key != "description"}
            choices = [array]
        arrays = [c for c in choices if c.get("type") == "array"]
        if len(arrays) != 1 or "items" not in arrays[0]:
            raise TypeError(f"OneOrMany needs a list type, not {choices}")
        position = choices.index(arrays[0]) + 1
        schema["anyOf"] = [*choices[:position], dict(arrays[0]["items"]), *choices[position:]]
        return schema


def _as_list(value: object) -> object:
    # JSON has no tuples or sets: anything but a list (or null) is one value.
    return value if value is None or isinstance(value, list) else [value]


def tool_description(fn: Callable[..., object]) -> str:
    """A tool's description from its docstring, as a client shows it: the source's indentation
    gone (``inspect.cleandoc``) and each paragraph on one line."""
    text = inspect.cleandoc(fn.__doc__ or "")
    return "\n\n".join(" ".join(p.split()) for p in text.split("\n\n") if p.strip())
