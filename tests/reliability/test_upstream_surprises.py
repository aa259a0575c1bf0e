"""Upstream surprises, end to end: TestIO answers in shapes a tidy sandbox never would (unknown
fields, missing optional fields, ``steps`` as a string, dates in several ISO forms or unreadable,
a product with no tests, a test with no bugs, a test that moves to another product), the mirror
syncs them through the real client, and the query tools answer the right thing.

The odd shapes are served by ``ReshapedWorld``: the sandbox's own account, with per-id edits
applied to every answer that carries an object (listing, detail, bug lists) and to
``snapshot()``, so ``mirror_differences`` still compares the mirror with exactly what was sent.
The sandbox's own bookkeeping (ordering, sections, bug filters) keeps working on the tidy data.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mcp import Client

from testio_mirror.sandbox import SandboxApp, SandboxConfig, SandboxServer, SandboxWorld
from testio_mirror.sandbox.dataset import DatasetSpec
from tests.helpers.expected_answers import parse_time
from tests.helpers.mcp_session import JSON, call, connect, pages
from tests.helpers.mirror_equality import mirror_differences
from tests.helpers.reliability_ledger import Ledger
from tests.helpers.settings import make_settings

Shape = Callable[[JSON], None]


def edit(set_: JSON | None = None, drop: tuple[str, ...] = ()) -> Shape:
    """A shape that sets some fields and removes others (in place)."""

    def apply(obj: JSON) -> None:
        for name in drop:
            obj.pop(name, None)
        obj.update(set_ or {})

    return apply


class ReshapedWorld(SandboxWorld):
    """The sandbox's account as a less tidy TestIO would send it."""

    def __init__(self, spec: DatasetSpec) -> None:
        super().__init__(spec)
        self.product_shapes: dict[int, list[Shape]] = {}
        self.test_shapes: dict[int, list[Shape]] = {}
        self.bug_shapes: dict[int, list[Shape]] = {}

    @staticmethod
    def _shaped(shapes: dict[int, list[Shape]], obj: JSON) -> JSON:
        for shape in shapes.get(obj["id"], []):
            shape(obj)
        return obj

    def products(self) -> list[JSON]:
        return [self._shaped(self.product_shapes, p) for p in super().products()]

    def product(self, product_id: int) -> JSON:
        return self._shaped(self.product_shapes, super().product(product_id))

    def tests_page(self, product_id: int, page: int, per_page: int) -> list[JSON]:
        listed = super().tests_page(product_id, page, per_page)
        return [self._shaped(self.test_shapes, t) for t in listed]

    def test(self, test_id: int) -> JSON:
        return self._shaped(self.test_shapes, super().test(test_id))

    def bugs(
        self,
        test_ids: list[int] | None = None,
        product_ids: list[int] | None = None,
        section_ids: list[int] | None = None,
        export_status: str | None = None,
    ) -> list[JSON]:
        found = super().bugs(test_ids, product_ids, section_ids, export_status)
        return [self._shaped(self.bug_shapes, b) for b in found]

    def bug(self, bug_id: int) -> JSON:
        return self._shaped(self.bug_shapes, super().bug(bug_id))

    def snapshot(self) -> JSON:
        truth = super().snapshot()
        for key, shapes in (
            ("products", self.product_shapes),
            ("tests", self.test_shapes),
            ("bugs", self.bug_shapes),
        ):
            for obj in truth[key].values():
                self._shaped(shapes, obj)
        return truth


class ReshapingSandbox(SandboxServer):
    """A sandbox serving a ``ReshapedWorld``."""

    def __init__(self, config: SandboxConfig) -> None:
        super().__init__(config)
        self.reshaped = ReshapedWorld(config.dataset)
        self.world = self.reshaped
        self.app = SandboxApp(
            self.reshaped,
            config.token,
            knobs=config.knobs,
            faults=self.faults,
            requests=self.requests,
        )


def utc(day: int, hour: int, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, second, micro, tzinfo=UTC)


# Newest first in time, never in text: each form must be read, not compared as a string.
END_FORMS: list[tuple[str, datetime]] = [
    ("2026-12-01T10:00:00.000001Z", utc(1, 10, 0, 0, 1)),
    ("2026-12-01T12:00:00+02:00", utc(1, 10)),
    ("2026-12-01T05:59:59.250-04:00", utc(1, 9, 59, 59, 250_000)),
    ("2026-12-01T09:59:59Z", utc(1, 9, 59, 59)),
    ("2026-12-01T09:00Z", utc(1, 9)),
    ("2026-12-01T13:00:00+05:30", utc(1, 7, 30)),
    ("2026-12-01T03:00:00.5+00:00", utc(1, 3, 0, 0, 500_000)),
    ("2026-12-01", utc(1, 0)),  # a bare date: UTC midnight
]
REPORTED_FORMS: list[tuple[str, datetime]] = [
    ("2026-12-02T23:30:00-02:00", utc(3, 1, 30)),
    ("2026-12-03T01:00:00.999999Z", utc(3, 1, 0, 0, 999_999)),
    ("2026-12-03T02:00:00.5+01:00", utc(3, 1, 0, 0, 500_000)),
    ("2026-12-03T01:00:00+00:00", utc(3, 1)),
    ("2026-12-03T00:59:59.9Z", utc(3, 0, 59, 59, 900_000)),
]
STEPS_TEXT = "Open the app\r\nTap Login\n\n   Watch the spinner  \n"
UNKNOWN = {"x_budget": {"currency": "EUR", "amount": 1200}, "x_labels": ["beta", None]}
TEST_OPTIONAL = (
    "title",
    "goal",
    "instructions",
    "instructions_text",
    "out_of_scope",
    "out_of_scope_text",
    "testing_type",
    "start_at",
    "review_status",
    "created_by",
    "submitted_by",
    "section",
    "test_environment",
    "features",
    "requirements",
    "language",
    "enable_low",
    "enable_high",
    "enable_critical",
)
BUG_OPTIONAL = (
    "severity",
    "known",
    "auto_accepted",
    "actual_result",
    "expected_result",
    "steps",
    "feature",
    "test_feature",
    "author",
    "comments",
    "devices",
    "attachments",
    "location",
    "language",
    "exported_at",
)
PRODUCT_KEYS = {"id", "name", "type", "has_sections", "description"}


@dataclass
class Checks:
    """Named checks, all run, failures reported together."""

    results: list[tuple[str, bool]] = field(default_factory=list)

    def __call__(self, what: str, ok: bool) -> None:
        self.results.append((what, ok))

    def equal(self, what: str, got: Any, wanted: Any) -> None:
        self.results.append((f"{what}: got {got!r}, wanted {wanted!r}", got == wanted))

    @property
    def failed(self) -> list[str]:
        return [what for what, ok in self.results if not ok]


def _times(items: list[JSON], key: str) -> list[datetime | None]:
    return [parse_time(i[key]) if i[key] is not None else None for i in items]


def _newest_first(pairs: dict[int, datetime | None]) -> list[int]:
    """Ids by time then id, newest first, the undated last (also by id, highest first)."""
    dated = sorted((t, i) for i, t in pairs.items() if t is not None)
    undated = sorted(i for i, t in pairs.items() if t is None)
    return [i for _, i in reversed(dated)] + list(reversed(undated))


@dataclass
class Scenario:
    """The ids the test shaped, and what each must look like."""

    dated_tests: dict[int, datetime | None]
    bare: int
    unreadable: int
    starved: int
    titled_by_alias: int
    alias_texts: tuple[str, str]
    untitled: int
    dressed: int
    buggy: int
    bug_times: dict[int, datetime | None]
    string_steps: int
    null_steps: int
    empty_steps: int
    odd_steps: int
    stripped_bug: int
    dressed_bug: int
    no_bugs: int
    empty_product: int
    object_named: tuple[int, str]
    moving_head: int
    moving_deep: int


def _shape_the_account(world: ReshapedWorld) -> Scenario:
    sectioned, plain, third, empty = sorted(p["id"] for p in world.products())
    for test_id in [t["id"] for t in world.tests_page(empty, 1, 1000)]:
        world.remove_test(test_id)
    # Products: one without its optional fields and with unknown ones, one named by an object.
    world.product_shapes[plain] = [
        edit(
            {**UNKNOWN, "x_owner": {"team": "QA"}},
            drop=("description", "type", "sections", "sections_with_default"),
        )
    ]
    third_name = str(world.product(third)["name"])
    world.product_shapes[third] = [edit({"name": {"name": third_name, "locale": "en"}})]
    # The sectioned product's newest tests: dates in every form; two older ones without a
    # readable end (missing; unreadable).
    listing = [t["id"] for t in world.tests_page(sectioned, 1, 1000)]
    for test_id, (text, _) in zip(listing, END_FORMS, strict=False):
        world.test_shapes[test_id] = [edit({"end_at": text})]
    world.test_shapes[listing[-2]] = [edit(drop=("end_at",))]
    world.test_shapes[listing[-1]] = [edit({"end_at": "soon", "start_at": "2026-13-45T99:00Z"})]
    world.test_shapes[listing[0]].append(edit({"start_at": "2026-11-30T23:00:00-01:00"}))
    dated: dict[int, datetime | None] = dict.fromkeys(listing)
    for test_id, (_, moment) in zip(listing, END_FORMS, strict=False):
        dated[test_id] = moment
    dated.update({t: parse_time(world.test(t)["end_at"]) for t in listing[len(END_FORMS) : -2]})
    # The plain product: tests without optional fields, with unknown ones, with odd bugs.
    plain_tests = [t["id"] for t in world.tests_page(plain, 1, 1000)]
    starved, alias, untitled, dressed, buggy, deep = plain_tests[-6:]
    world.test_shapes[starved] = [edit(drop=(*TEST_OPTIONAL, "goal_text", "test_title"))]
    alias_texts = (world.test(alias)["test_title"], world.test(alias)["goal_text"])
    world.test_shapes[alias] = [edit(drop=TEST_OPTIONAL)]  # test_title and goal_text remain
    world.test_shapes[untitled] = [edit({"status": None}, drop=("title", "test_title"))]
    world.test_shapes[dressed] = [
        edit({**UNKNOWN, "created_by": {"name": "Jörg Müller", "x_id": 9}}),
        lambda t: t["features"][0].update({"x_weight": 0.5}) if t["features"] else None,
    ]
    bug_ids = [b["id"] for b in world.bugs(test_ids=[buggy])]
    bug_ids += [world.add_bug(buggy) for _ in range(6 - len(bug_ids))]
    string_steps, null_steps, empty_steps, odd_steps, stripped, dressed_bug = bug_ids
    times: dict[int, datetime | None] = {}
    for bug_id, (text, moment) in zip(bug_ids, REPORTED_FORMS, strict=False):
        world.bug_shapes[bug_id] = [edit({"reported_at": text})]
        times[bug_id] = moment
    world.bug_shapes[string_steps].append(edit({"steps": STEPS_TEXT}))
    world.bug_shapes[null_steps].append(edit({"steps": None}))
    world.bug_shapes[empty_steps].append(edit({"steps": ""}))
    world.bug_shapes[odd_steps].append(edit({"steps": ["Open", 2, None, "Close"]}))
    world.bug_shapes[stripped].append(edit(drop=BUG_OPTIONAL))
    world.bug_shapes[dressed_bug] = [
        edit({**UNKNOWN, "author": {"name": "tester_ana", "x_rank": 3}}, drop=("reported_at",))
    ]
    times[dressed_bug] = None
    moving_head = world.add_test(third)
    for _ in range(2):
        world.add_bug(moving_head)
    return Scenario(
        dated_tests=dated,
        bare=listing[len(END_FORMS) - 1],
        unreadable=listing[-1],
        starved=starved,
        titled_by_alias=alias,
        alias_texts=alias_texts,
        untitled=untitled,
        dressed=dressed,
        buggy=buggy,
        bug_times=times,
        string_steps=string_steps,
        null_steps=null_steps,
        empty_steps=empty_steps,
        odd_steps=odd_steps,
        stripped_bug=stripped,
        dressed_bug=dressed_bug,
        no_bugs=world.add_test(third),  # a new test is born without bugs
        empty_product=empty,
        object_named=(third, third_name),
        moving_head=moving_head,
        moving_deep=deep,
    )


def _raw(database: Path, table: str, row_id: int) -> JSON:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        row = conn.execute(f"SELECT raw FROM {table} WHERE id = ?", (row_id,)).fetchone()  # noqa: S608
    return dict(json.loads(row[0])) if row else {}


async def _test_ids(client: Client, product_id: int) -> list[int]:
    listed = await pages(client, "list_tests", {"product_id": product_id, "limit": 7}, "tests")
    return [t["id"] for t in listed]


async def _check_products(client: Client, world: ReshapedWorld, s: Scenario, check: Checks) -> None:
    answer = await call(client, "list_products")
    by_id = {p["id"]: p for p in answer["products"]}
    plain, third = sorted(by_id)[1:3]
    check.equal("products", sorted(by_id), sorted(p["id"] for p in world.products()))
    check.equal(
        "unknown product fields stay out of answers",
        set(by_id[plain]),
        PRODUCT_KEYS - {"description"},  # it has none, and an empty optional field is left out
    )
    check.equal("missing type", by_id[plain]["type"], None)
    check.equal("missing description", by_id[plain].get("description"), None)  # optional: left out
    check.equal("missing sections", by_id[plain]["has_sections"], False)
    check.equal("a name sent as an object", (third, by_id[third]["name"]), s.object_named)


async def _check_dates(client: Client, world: ReshapedWorld, s: Scenario, check: Checks) -> None:
    sectioned = min(p["id"] for p in world.products())
    listed = await pages(client, "list_tests", {"product_id": sectioned, "limit": 3}, "tests")
    wanted = _newest_first(s.dated_tests)
    check.equal("tests newest first across date forms", [t["id"] for t in listed], wanted)
    check.equal(
        "end dates read in every form",
        dict(zip([t["id"] for t in listed], _times(listed, "end_at"), strict=True)),
        s.dated_tests,
    )
    bare = await call(client, "get_test", {"test_id": s.bare})
    check.equal("a bare date is UTC midnight", bare["test"]["end_at"], "2026-12-01T00:00:00Z")
    head = await call(client, "get_test", {"test_id": wanted[0]})
    check.equal("start with an offset", parse_time(head["test"]["start_at"]), utc(1, 0))
    unreadable = await call(client, "get_test", {"test_id": s.unreadable})
    check.equal("an unreadable end is null", unreadable["test"]["end_at"], None)
    check.equal("an unreadable start is null", unreadable["test"]["start_at"], None)
    since = await pages(
        client,
        "list_tests",
        {"product_id": sectioned, "since": "2026-12-01T11:00:00+02:00", "limit": 2},
        "tests",
    )
    recent = [i for i, t in s.dated_tests.items() if t is not None and t >= utc(1, 9)]
    check.equal("since with an offset", sorted(t["id"] for t in since), sorted(recent))


async def _check_shapes(client: Client, s: Scenario, check: Checks) -> None:
    starved = (await call(client, "get_test", {"test_id": s.starved, "detail": "full"}))["test"]
    for name in (
        "title",
        "testing_type",
        "start_at",
        "goal",
        "instructions",
        "out_of_scope",
        "review_status",
        "created_by",
    ):
        check.equal(f"missing test {name} is null or left out", starved.get(name), None)
    check.equal("missing features", starved["feature_ids"], [])
    alias = (await call(client, "get_test", {"test_id": s.titled_by_alias, "detail": "full"}))[
        "test"
    ]
    check.equal("title and goal from their twins", (alias["title"], alias["goal"]), s.alias_texts)
    untitled = (await call(client, "get_test", {"test_id": s.untitled}))["test"]
    check.equal("no title at all", untitled["title"], None)
    check.equal("null status", untitled["status"], None)
    dressed = await call(client, "get_test", {"test_id": s.dressed, "detail": "full"})
    check.equal("a person sent as an object", dressed["test"]["created_by"], "Jörg Müller")
    check("unknown test fields stay out of answers", "x_budget" not in dressed["test"])

    bugs = await call(client, "list_bugs", {"test_ids": [s.buggy], "detail": "full", "limit": 50})
    listed = bugs["bugs"]
    wanted = _newest_first(s.bug_times)
    check.equal("bugs newest first across date forms", [b["id"] for b in listed], wanted)
    check.equal(
        "report dates read in every form",
        dict(zip([b["id"] for b in listed], _times(listed, "reported_at"), strict=True)),
        s.bug_times,
    )
    steps = {
        s.string_steps: ["Open the app", "Tap Login", "Watch the spinner"],
        s.null_steps: [],
        s.empty_steps: [],
        s.odd_steps: ["Open", "2", "Close"],
        s.stripped_bug: [],
    }
    for bug_id, wanted_steps in steps.items():
        bug = (await call(client, "get_bug", {"bug_id": bug_id}))["bug"]
        check.equal(f"steps of bug {bug_id}", bug["steps"], wanted_steps)
    stripped = (await call(client, "get_bug", {"bug_id": s.stripped_bug}))["bug"]
    for name in (
        "severity",
        "known",
        "auto_accepted",
        "actual_result",
        "expected_result",
        "feature_id",
        "feature_title",
        "author",
        "reject_reason",
    ):
        check.equal(f"missing bug {name} is null or left out", stripped.get(name), None)
    check.equal("its test is known", stripped["test_id"], s.buggy)
    dressed_bug = (await call(client, "get_bug", {"bug_id": s.dressed_bug}))["bug"]
    check.equal("an author with unknown fields", dressed_bug["author"], "tester_ana")
    check("unknown bug fields stay out of answers", "x_budget" not in dressed_bug)
    report = await call(client, "get_test", {"test_id": s.buggy})
    counts = report["bug_counts"]
    check.equal("bugs counted", counts["total"], len(s.bug_times))
    check.equal("a bug without severity counts as unknown", counts["by_severity"].get("unknown"), 1)
    since = await call(
        client,
        "list_bugs",
        {"test_ids": [s.buggy], "since": "2026-12-03T02:00:00+01:00", "limit": 50},
    )
    recent = [i for i, t in s.bug_times.items() if t is not None and t >= utc(3, 1)]
    check.equal("bugs since with an offset", sorted(b["id"] for b in since["bugs"]), sorted(recent))


async def _check_zeroes(client: Client, s: Scenario, check: Checks) -> None:
    tests = await call(client, "list_tests", {"product_id": s.empty_product})
    check.equal("a product without tests lists none", tests["tests"], [])
    check.equal("and says there is no more", tests["next_cursor"], None)
    check("its listing is complete, not stale", tests["freshness"]["stale"] is False)
    bugs = await call(client, "list_bugs", {"product_id": s.empty_product})
    check.equal("a product without tests has no bugs", bugs["bugs"], [])
    stats = await call(client, "bug_stats", {"group_by": "severity", "product_id": s.empty_product})
    check.equal("its bug stats total 0", (stats["total"], stats["groups"]), (0, []))
    features = await call(client, "list_features", {"product_id": s.empty_product})
    check("its features are listed", len(features["features"]) > 0)
    report = await call(client, "get_test", {"test_id": s.no_bugs})
    check.equal(
        "a test without bugs counts 0",
        report["bug_counts"],
        {"by_severity": {}, "by_status": {}, "total": 0},
    )
    none = await call(client, "list_bugs", {"test_ids": [s.no_bugs]})
    check.equal("and lists none", none["bugs"], [])
    stats = await call(client, "bug_stats", {"group_by": "status", "test_ids": [s.no_bugs]})
    check.equal("its stats", (stats["total"], stats["acceptance_rate"]), (0, None))


async def test_odd_shapes_sync_and_answer_right(tmp_path: Path, ledger: Ledger) -> None:
    spec = DatasetSpec(seed=21, products=4, section_products=1, tests_per_product=14)
    check = Checks()
    differences: list[str] = []
    with ReshapingSandbox(SandboxConfig(dataset=spec)) as sandbox:
        world = sandbox.reshaped
        s = _shape_the_account(world)
        settings = make_settings(sandbox, tmp_path / "home")
        _, plain, third, _ = sorted(p["id"] for p in world.products())
        async with connect(settings) as client:
            first = await call(client, "sync_data", {"include_bugs": True})
            check.equal("first sync", first["result"]["status"], "success")
            differences += mirror_differences(settings.database_path, world, bugs=True)
            database = settings.database_path
            for table, row_id in (
                ("products", plain),
                ("tests", s.dressed),
                ("bugs", s.dressed_bug),
            ):
                kept = _raw(database, table, row_id).get("x_budget")
                check.equal(
                    f"unknown fields kept in the raw {table} row", kept, UNKNOWN["x_budget"]
                )
            features = _raw(database, "tests", s.dressed).get("features") or [{}]
            check.equal("nested unknown fields kept", features[0].get("x_weight"), 0.5)
            await _check_products(client, world, s, check)
            await _check_dates(client, world, s, check)
            await _check_shapes(client, s, check)
            await _check_zeroes(client, s, check)

            # A test moves to another product: the mirror files it anew only when synced.
            world.move_test(s.moving_head, plain)
            world.extend_test(s.moving_head, days=60)  # the newest of its new product
            world.move_test(s.moving_deep, third)  # an old one, deep in the listing
            check(
                "before the sync, still under its old product",
                s.moving_head in await _test_ids(client, third),
            )
            check(
                "and not yet under its new one", s.moving_head not in await _test_ids(client, plain)
            )
            second = await call(client, "sync_data", {"include_bugs": True})
            check.equal("second sync", second["result"]["status"], "success")
            check(
                "after the sync, under its new product",
                s.moving_head in await _test_ids(client, plain),
            )
            check(
                "and no longer under its old one",
                s.moving_head not in await _test_ids(client, third),
            )
            moved = await call(client, "get_test", {"test_id": s.moving_head})
            check.equal("get_test names the new product", moved["test"]["product_id"], plain)
            its_bugs = await call(client, "list_bugs", {"product_id": plain, "limit": 100})
            followed = [b["id"] for b in its_bugs["bugs"] if b["test_id"] == s.moving_head]
            check.equal("its bugs follow it", len(followed), 2)
            old_bugs = await call(client, "list_bugs", {"product_id": third, "limit": 100})
            check(
                "and leave the old product",
                all(b["test_id"] != s.moving_head for b in old_bugs["bugs"]),
            )
            # A full listing finds a test that moved from deep in a listing.
            third_sync = await call(client, "sync_data", {"include_bugs": True, "force": True})
            check.equal("forced sync", third_sync["result"]["status"], "success")
            check(
                "a deep test moves on a full listing",
                s.moving_deep in await _test_ids(client, third),
            )
            check("and leaves its old product", s.moving_deep not in await _test_ids(client, plain))
            differences += mirror_differences(settings.database_path, world, bugs=True)
    ledger.record(
        "upstream surprises",
        trials=len(check.results),
        mismatches=len(check.failed) + len(differences),
    )
    assert differences == [], differences
    assert check.failed == [], check.failed
    assert len(check.results) > 60
