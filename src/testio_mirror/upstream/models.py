"""Typed wire models of the Customer API v2 objects: tolerant on purpose.

What the API notes promise is typed; optional fields may be missing or null, dates in any ISO 8601
form become aware UTC datetimes (an unreadable date becomes ``None`` rather than losing the object),
and ``steps`` arrive as a list or as one string and leave as a list. Everything else passes through
in ``raw``: every entity keeps the exact JSON it came from, which is what the mirror stores, so
fields the models do not name are kept there and nowhere else.

Example::

    test = ExploratoryTest.from_wire({"id": 7, "test_title": "Login", "end_at": "2026-01-02T03Z"})
    test.title, test.end_at     # "Login", datetime(2026, 1, 2, 3, 0, tzinfo=UTC)
"""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Annotated, Any, Self, TypeVar

from pydantic import (
    AliasPath,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
)
from typing_extensions import TypedDict

from testio_mirror.limits import MAX_ID
from testio_mirror.upstream.errors import BadResponseError

FINAL_TEST_STATUSES = frozenset({"archived", "cancelled"})
# What SQLite's INTEGER holds: a wider number would make the write raise OverflowError and end
# the whole run, so such an object is refused where it is read (ids are bounded by MAX_ID,
# which is the same top).
SQLITE_MIN_INTEGER = -(2**63)

# Where the objects skipped for an out-of-range number are told (the run in flight sets a
# list; tasks it starts share it). Nobody listening: they are skipped silently.
SKIPPED_OBJECTS: ContextVar[list[str] | None] = ContextVar("skipped_objects", default=None)


class OutOfRangeError(BadResponseError):
    """An object holds a number the mirror cannot store; the object is skipped, not the list."""


def _out_of_range(value: Any, where: str) -> str | None:
    """The path of the first whole number of ``value`` SQLite's INTEGER cannot hold."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return where if not SQLITE_MIN_INTEGER <= value <= MAX_ID else None
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            found = _out_of_range(getattr(value, name), f"{where}.{name}" if where else name)
            if found:
                return found
    elif isinstance(value, dict):
        for key, item in value.items():
            found = _out_of_range(item, f"{where}.{key}" if where else str(key))
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _out_of_range(item, f"{where}.{index}")
            if found:
                return found
    return None


def _utc(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            # RFC 3339 allows a lowercase "t" and "z"; fromisoformat does not.
            moment = datetime.fromisoformat(value.strip().upper().replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    # A date without an offset is read as UTC: the API documents offsets, so this is a guess
    # at worst, and the raw JSON keeps what was sent.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _steps(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [line.strip() for line in value.splitlines() if line.strip()]
    if isinstance(value, list):
        return [str(step) for step in value if step is not None]
    return [str(value)]


def _list_or_empty(value: Any) -> Any:
    return [] if value is None else value


def _text(value: Any) -> Any:
    # Names and titles sometimes come as objects ({"name": ...}); keep the readable part.
    if isinstance(value, dict):
        return value.get("name") or value.get("title")
    return value


UtcDatetime = Annotated[datetime | None, BeforeValidator(_utc)]
Steps = Annotated[list[str], BeforeValidator(_steps)]
Text = Annotated[str | None, BeforeValidator(_text)]


class WirePart(BaseModel):
    """A nested object read as a model (a product's section); the many nested objects of tests
    and bugs are read as ids or TypedDicts instead.

    Unknown fields are dropped from the model: they live in the entity's ``raw``, which keeps
    everything TestIO sent (``extra="allow"`` cost half the time of reading a bug). Parts carry
    no ``raw`` of their own: only entities pay for a private attribute, which pydantic
    initialises on every instance."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class WireModel(WirePart):
    """Base of every entity TestIO sends at the top level: unknown fields kept, raw JSON kept."""

    _raw: dict[str, Any] | None = PrivateAttr(default=None)

    @classmethod
    def from_wire(cls, data: Any) -> Self:
        """Build from one decoded JSON object.

        Raises:
            BadResponseError: not an object, or a required field (such as ``id``) is unusable.
        """
        if not isinstance(data, dict):
            raise BadResponseError(f"expected a {cls.__name__} object, got {type(data).__name__}")
        try:
            model = cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            raise BadResponseError(f"unusable {cls.__name__}: {where}: {first['msg']}") from None
        wide = _out_of_range(model, "")
        if wide is not None:
            shown = data.get("id", data.get("key", "?"))
            raise OutOfRangeError(
                f"{cls.__name__} {shown} skipped: a number out of range in {wide}"
            )
        # Straight into pydantic's store of private values: going through ``_raw`` (on a frozen
        # model, and again in ``raw``) costs microseconds per object, and a sync reads
        # thousands.
        private = model.__pydantic_private__
        assert private is not None  # pydantic made it: the class declares a private attribute
        private["_raw"] = data
        return model

    @property
    def raw(self) -> dict[str, Any]:
        """The JSON object exactly as TestIO sent it (empty for a model not built by
        ``from_wire``)."""
        private = self.__pydantic_private__
        found = private.get("_raw") if private else None
        return found if found is not None else {}


W = TypeVar("W", bound=WireModel)


def read_each(model: type[W], items: Iterable[Any]) -> list[W]:
    """Every item read as ``model``; one holding a number out of range is skipped and told to
    ``SKIPPED_OBJECTS``.

    Raises:
        BadResponseError: an item is unusable for another reason.
    """
    read: list[W] = []
    for item in items:
        try:
            read.append(model.from_wire(item))
        except OutOfRangeError as exc:
            told = SKIPPED_OBJECTS.get()
            if told is not None:
                told.append(str(exc))
    return read


class Section(WirePart):
    id: int
    name: Text = None


class Product(WireModel):
    id: int
    name: Text = None
    description: str | None = None
    type: str | None = None
    default_section_id: int | None = None
    sections: Annotated[list[Section], BeforeValidator(_list_or_empty)] = []
    sections_with_default: Annotated[list[Section], BeforeValidator(_list_or_empty)] = []

    @property
    def has_sections(self) -> bool:
        """The API's rule: sections, or more than the default in ``sections_with_default``."""
        return bool(self.sections) or len(self.sections_with_default) > 1

    @property
    def section_ids(self) -> list[int]:
        """Sections to ask for features, without the default when real sections exist."""
        if self.sections:
            return [s.id for s in self.sections]
        return [s.id for s in self.sections_with_default]


class Feature(WireModel):
    id: int
    title: Text = None
    description: str | None = None
    howtofind: str | None = None
    user_stories: Annotated[list[str], BeforeValidator(_list_or_empty)] = []


class UserStory(WireModel):
    id: int
    title: Text = None
    feature_id: int | None = None
    section_id: int | None = None


class TestFeature(TypedDict, total=False):
    """A feature as it appears inside a test, as the mirror reads it: a plain dict of these keys
    (``id`` is the test-feature id; its user stories stay in the test's ``raw``)."""

    id: int | None
    feature_id: int | None
    title: Text


class ExploratoryTest(WireModel):
    """An exploratory test (a "test cycle"); list items lack ``product``, detail has it.

    Like ``Bug``: references are read straight into the ids the mirror stores and features stay
    plain dicts. A full listing holds two windows of pages at once, and a model per reference,
    feature and requirement made each test several times larger in memory."""

    id: int
    title: Text = None
    status: str | None = None
    testing_type: str | None = None
    goal: str | None = None
    instructions: str | None = None
    out_of_scope: str | None = None
    start_at: UtcDatetime = None
    end_at: UtcDatetime = None
    review_status: str | None = None
    enable_low: bool | None = None
    enable_high: bool | None = None
    enable_critical: bool | None = None
    created_by: Text = None
    submitted_by: Text = None
    product_id: int | None = Field(default=None, validation_alias=AliasPath("product", "id"))
    section_id: int | None = Field(default=None, validation_alias=AliasPath("section", "id"))
    features: Annotated[list[TestFeature], BeforeValidator(_list_or_empty)] = []

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Self:
        if isinstance(obj, dict):
            # The API sends some fields twice under two names; take whichever is present.
            obj = dict(obj)
            for field, alias in (
                ("title", "test_title"),
                ("goal", "goal_text"),
                ("instructions", "instructions_text"),
                ("out_of_scope", "out_of_scope_text"),
            ):
                if obj.get(field) is None and obj.get(alias) is not None:
                    obj[field] = obj[alias]
        return super().model_validate(obj, **kwargs)

    @property
    def is_final(self) -> bool:
        """Archived and cancelled tests never change again."""
        return self.status in FINAL_TEST_STATUSES


class CommentAuthor(TypedDict, total=False):
    name: str | None


class BugComment(TypedDict, total=False):
    """A comment on a bug, as the mirror reads it: a plain dict of these keys (the comment's
    whole JSON stays in the bug's ``raw``)."""

    id: int | None
    body: str | None
    author: CommentAuthor | None


class Bug(WireModel):
    """A bug. Its references (test, product, feature, author) are read straight into the ids and
    name the mirror stores, and comments stay plain dicts: a bug holds half a dozen nested
    objects, and a model for each was most of the cost of reading a page of bugs."""

    id: int
    title: Text = None
    severity: str | None = None
    status: str | None = None
    auto_accepted: bool | None = None
    known: bool | None = None
    actual_result: str | None = None
    expected_result: str | None = None
    steps: Steps = []
    reported_at: UtcDatetime = None
    exported_at: UtcDatetime = None
    test_id: int | None = Field(default=None, validation_alias=AliasPath("test", "id"))
    product_id: int | None = Field(default=None, validation_alias=AliasPath("product", "id"))
    feature_id: int | None = Field(default=None, validation_alias=AliasPath("feature", "id"))
    author_name: str | None = Field(default=None, validation_alias=AliasPath("author", "name"))
    comments: Annotated[list[BugComment], BeforeValidator(_list_or_empty)] = []

    def reject_reason(self, reasons: list[RejectReason]) -> RejectReason | None:
        """The reject reason whose default comment opens this bug's latest such comment."""
        if self.status != "rejected":
            return None
        for comment in reversed(self.comments):
            body = (comment.get("body") or "").strip()
            for reason in reasons:
                if reason.default_comment and body.startswith(reason.default_comment.strip()):
                    return reason
        return None


class RejectReason(WireModel):
    key: str
    name: str | None = None
    default_comment: str | None = None


# -- test-case tests (tests whose ``testing_type`` is null) -------------------------------------
# ``__test__ = False``: pytest would take a class named Test* imported into a test module for a
# test class.


class TestCaseStep(WirePart):
    """One step of a test case."""

    __test__ = False

    id: int | None = None
    description: Text = None


class TestCase(WirePart):
    """One case of a test-case test, with its steps in order."""

    __test__ = False

    id: int
    title: Text = None
    steps: Annotated[list[TestCaseStep], BeforeValidator(_list_or_empty)] = []


class TestCaseTest(WireModel):
    """The cases of a test-case test; ``raw`` is the object inside the envelope (or the object
    alone, as some deployments answer it)."""

    __test__ = False

    test_cases: Annotated[list[TestCase], BeforeValidator(_list_or_empty)] = []


class StepResult(WirePart):
    """How one step went in one execution (``id`` is the step's)."""

    id: int | None = None
    status: str | None = None
    comment: str | None = None


class TestCaseResult(WireModel):
    """One execution of a test case by a tester. The API notes: ``passed`` is a pass, any other
    status a failure."""

    __test__ = False

    test_case_id: int
    status: str | None = None
    tester_name: str | None = Field(default=None, validation_alias=AliasPath("tester", "name"))
    steps: Annotated[list[StepResult], BeforeValidator(_list_or_empty)] = []

    @property
    def passed(self) -> bool:
        return self.status == "passed"
