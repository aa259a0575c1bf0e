"""The in-memory bug columns (store/bug_facts.py, metrics_engine.py) answer query_metrics' bug
aggregates exactly as SQL does: on random queries over a seeded account with odd rows added
(NULLs everywhere, a bug without a product or a mirrored test), and after every kind of write
that changes what a bug counts toward (each moves a generation, and the columns reload)."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import aiosqlite

from testio_mirror.store.bug_facts import BugFacts
from testio_mirror.store.bugs import write_bugs
from testio_mirror.store.exploratory_tests import write_tests
from testio_mirror.store.metrics_columns import TIME_DIMENSIONS
from testio_mirror.store.metrics_engine import CODED_DIMENSIONS, supports
from testio_mirror.store.metrics_engine_tests import TEST_AGGREGATES, TEST_DIMENSIONS
from testio_mirror.store.metrics_grouping import Group, Grouping, Key
from testio_mirror.store.metrics_sql import MetricsFilter
from testio_mirror.store.metrics_vocabulary import AGGREGATES, DIMENSIONS, Side
from testio_mirror.upstream.models import Bug, ExploratoryTest
from tests.helpers.seeded_mirror import Seeded

BUG_AGGREGATES = sorted(name for name, a in AGGREGATES.items() if a.side == "bugs")
ENGINE_DIMENSIONS = [*CODED_DIMENSIONS, *TIME_DIMENSIONS]
SIDES: dict[Side, tuple[list[str], list[str]]] = {  # the dimensions and aggregates of each
    "bugs": (ENGINE_DIMENSIONS, BUG_AGGREGATES),
    "tests": (list(TEST_DIMENSIONS), list(TEST_AGGREGATES)),
}


class Metrics:
    """Ask by name; the dimensions and metrics are plain lists."""

    def __init__(self, dimensions: Sequence[str], aggregates: Sequence[str]) -> None:
        self.dimensions = list(dimensions)
        self.metrics: list[str] = []
        self.aggregates = list(aggregates)


async def both(
    conn: aiosqlite.Connection,
    facts: BugFacts,
    dimensions: Sequence[str],
    aggregates: Sequence[str],
    chosen: MetricsFilter,
) -> tuple[dict[Key, Group], dict[Key, Group]]:  # aggregates of one side
    """(SQL's groups, the columns' groups), numbers' NULL read as 0 (SQL's sum of no true
    condition over NULLs is NULL; every metric reads it as 0)."""
    query = Metrics(dimensions, aggregates)
    by_sql = await Grouping(conn, None).groups(query, chosen, only=aggregates)
    by_columns = await Grouping(conn, facts).groups(query, chosen, only=aggregates)
    return _normal(by_sql), _normal(by_columns)


def _normal(groups: dict[Key, Group]) -> dict[Key, Group]:
    """NULL counts as 0 (see ``both``), except a field's sum, min and max (None where no bug
    has a number); floats to 9 digits (SQL and numpy add them in different orders)."""

    def value(name: str, found: Any) -> Any:
        if isinstance(found, float):
            return float(f"{found:.9g}")
        return 0 if found is None and not name.startswith("field_") else found

    return {
        key: {name: value(name, found) for name, found in group.items()}
        for key, group in groups.items()
    }


async def insert_odd_rows(conn: aiosqlite.Connection) -> None:
    """Rows a sync rarely writes: NULL in every column the metrics read, a bug of no product,
    one whose test is not mirrored, an unknown severity, one tombstoned; tests without an end,
    a type or features, with an environment, one tombstoned; features shared across tests."""
    stamp = "2026-11-21T06:00:00.000000Z"
    tests: list[tuple[Any, ...]] = [
        (
            8_000_001,
            101,
            None,
            None,
            None,
            None,
            None,
            None,
            '{"test_environment": {"title": "E"}}',
        ),
        (
            8_000_002,
            102,
            "running",
            "coverage",
            "2025-03-01T00:00:00.000000Z",
            "a",
            None,
            None,
            "{}",
        ),
        (8_000_003, 102, "locked", "rapid", "2026-07-07T10:00:00.000000Z", None, "b", stamp, "{}"),
    ]
    for row in tests:
        await conn.execute(
            "INSERT INTO tests (id, product_id, status, testing_type, end_at, created_by, "
            "submitted_by, deleted_at, raw, content_hash, fetched_at, changed_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?, ?)",
            (*row, stamp, stamp),
        )
    feature = next(iter(await conn.execute_fetchall("SELECT min(feature_id) FROM test_features")))[
        0
    ]
    for test_id, feature_id in ((8_000_002, feature), (8_000_002, 424), (8_000_003, feature)):
        await conn.execute(
            "INSERT INTO test_features (test_id, feature_id) VALUES (?, ?)", (test_id, feature_id)
        )
    rows: list[tuple[Any, ...]] = [
        (9_000_001, None, None, None, None, None, None, None, None, None, None, None),
        (9_000_002, 424242, 101, None, "Zoë", "weird", "accepted", 1, 0, None, stamp, None),
        (9_000_003, None, None, 77, "zoë", "critical", "rejected", 0, 1, "r", None, None),
        (9_000_004, None, 101, None, "x", "low", "forwarded", None, None, None, stamp, stamp),
        (
            9_000_005,
            None,
            102,
            None,
            None,
            None,
            "accepted",
            1,
            2,
            None,
            "1999-12-31T23:59:59.999999Z",
            None,
        ),
    ]
    for row in rows:
        await conn.execute(
            "INSERT INTO bugs (id, test_id, product_id, feature_id, author, severity, status, "
            "auto_accepted, known, reject_reason, reported_at, deleted_at, raw, content_hash, "
            "fetched_at, changed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '{}', '', ?, ?)",
            (*row, stamp, stamp),
        )


def random_filter(rng: random.Random, values: dict[str, list[Any]]) -> MetricsFilter:
    def some(name: str) -> list[Any] | None:
        if rng.random() > 0.25:
            return None
        pool = values[name] + ["no-such", 999_999]
        return rng.sample(pool, rng.randint(1, min(3, len(pool))))

    since = until = None
    if rng.random() < 0.4:
        since = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=rng.randint(0, 330))
    if rng.random() < 0.4:
        until = datetime(2026, 6, 1, tzinfo=UTC) + timedelta(days=rng.randint(0, 200))
    if rng.random() < 0.05:
        since = datetime(1, 1, 1, tzinfo=UTC)
    return MetricsFilter(
        product_ids=some("product_id"),
        feature_ids=some("feature_id"),
        test_ids=some("test_id"),
        testing_types=some("testing_type"),
        severities=some("severity"),
        statuses=some("status"),
        testers=some("author"),
        known=rng.choice([None, None, None, True, False]),
        since=since,
        until=until,
    )


async def column_values(conn: aiosqlite.Connection) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for column in ("product_id", "feature_id", "test_id", "author", "severity", "status"):
        sql = f"SELECT DISTINCT {column} FROM bugs"  # noqa: S608 (the names above)
        rows = await conn.execute_fetchall(sql)
        found[column] = [row[0] for row in rows if row[0] is not None]
    rows = await conn.execute_fetchall("SELECT DISTINCT testing_type FROM tests")
    found["testing_type"] = [row[0] for row in rows if row[0] is not None]
    return found


async def test_random_queries_are_answered_as_sql_answers_them(seeded: Seeded) -> None:
    facts = BugFacts()
    async with seeded.mirror.db.transaction() as conn:
        await insert_odd_rows(conn)
    rng = random.Random(19)
    async with seeded.mirror.db.reader() as conn:
        values = await column_values(conn)
        values["feature_id"].append(424)  # only a test covers it
        keys = [
            row[0] for row in await conn.execute_fetchall("SELECT DISTINCT key FROM bug_fields")
        ]
        assert len(keys) > 1  # the sandbox's custom reports, and the odd key
        with_details = (
            [*ENGINE_DIMENSIONS, "platform", "browser", "device_category"]
            + [f"custom_field:{key}" for key in keys],
            BUG_AGGREGATES
            + [f"field_{kind}:{key}" for kind in ("count", "sum", "min", "max") for key in keys],
        )
        for trial in range(600):
            side: Side = "bugs" if trial % 3 else "tests"
            names, aggregates_of_side = with_details if trial % 3 == 2 else SIDES[side]
            dimensions = rng.sample(names, rng.choice([0, 1, 2, 2, 2]))
            if sum(d in TIME_DIMENSIONS for d in dimensions) > 1:
                dimensions = dimensions[:1]
            aggregates = rng.sample(aggregates_of_side, rng.randint(1, len(aggregates_of_side)))
            chosen = random_filter(rng, values)
            by_sql, by_columns = await both(conn, facts, dimensions, aggregates, chosen)
            assert by_columns == by_sql, (trial, side, dimensions, aggregates, chosen)


async def test_the_columns_answer_every_aggregate_and_dimension() -> None:
    assert supports("bugs", ENGINE_DIMENSIONS, BUG_AGGREGATES)
    by_sql = [name for name in DIMENSIONS if not supports("bugs", [name], ["bugs"])]
    assert by_sql == []
    assert supports("bugs", ["custom_field:size", "platform"], ["field_mean:size"]) is False
    assert supports("bugs", ["custom_field:size", "platform"], ["field_sum:size", "bugs"])
    test_side = [n for n, a in AGGREGATES.items() if a.side == "tests"]
    with_tests = [n for n, d in DIMENSIONS.items() if d.test_key is not None]
    assert supports("tests", with_tests, test_side)


EVERYTHING = ("product", "status")


async def answered_alike(seeded: Seeded, facts: BugFacts, *dimensions: str) -> dict[Key, Group]:
    """The bug groups by ``dimensions``, once both ways agree on them and on the test groups
    by the same dimensions (those tests have) and by feature and month."""
    dimensions = dimensions or EVERYTHING
    test_dimensions = [d for d in dimensions if d in TEST_DIMENSIONS]
    async with seeded.mirror.db.reader() as conn:
        by_sql, by_columns = await both(conn, facts, dimensions, BUG_AGGREGATES, MetricsFilter())
        for chosen in (test_dimensions, ["feature", "month"]):
            tests_by_sql, tests_by_columns = await both(
                conn, facts, chosen, list(TEST_AGGREGATES), MetricsFilter()
            )
            assert tests_by_columns == tests_by_sql
    assert by_columns == by_sql
    return by_columns


JSON = dict[str, Any]


def accepted_bug(seeded: Seeded) -> JSON:
    """A copy of the wire form of an accepted bug of the account."""
    found = next(b for b in seeded.snap["bugs"].values() if b["status"] == "accepted")
    copied: JSON = json.loads(json.dumps(found))
    return copied


async def test_every_write_reloads_what_it_changed(seeded: Seeded) -> None:
    facts = BugFacts()
    before = await answered_alike(seeded, facts)
    stamp = seeded.mirror.policy.stamp()
    # A bug's status changes (as a sync or the triage desk writes it).
    wire = accepted_bug(seeded)
    wire["status"] = "rejected"
    async with seeded.mirror.db.transaction() as conn:
        await write_bugs(conn, [Bug.from_wire(wire)], stamp)
    after = await answered_alike(seeded, facts)
    product = wire["product"]["id"]
    assert after[(product, "rejected")]["bugs"] == before[(product, "rejected")]["bugs"] + 1
    # A test's testing type changes: its bugs' testing_type groups move.
    test = json.loads(json.dumps(seeded.snap["tests"][wire["test"]["id"]]))
    by_type = await answered_alike(seeded, facts, "testing_type")
    test["testing_type"] = "usability-renamed"
    async with seeded.mirror.db.transaction() as conn:
        await write_tests(conn, [ExploratoryTest.from_wire(test)], stamp)
    moved = await answered_alike(seeded, facts, "testing_type")
    assert ("usability-renamed",) in moved
    # A test's end moves to another month, and it covers one more feature.
    test["end_at"] = "2019-01-15T10:00:00Z"
    test["features"] = [*test["features"], {**test["features"][0], "feature_id": 987_654}]
    async with seeded.mirror.db.transaction() as conn:
        await write_tests(conn, [ExploratoryTest.from_wire(test)], stamp)
    async with seeded.mirror.db.reader() as conn:
        _, by_columns = await both(conn, facts, ["feature", "month"], ["tests"], MetricsFilter())
    assert by_columns[(987_654, "2019-01")] == {"tests": 1}
    await answered_alike(seeded, facts, "month")
    # Features written alone, and a test's end alone (no write path does: the triggers see it).
    async with seeded.mirror.db.transaction() as conn:
        await conn.execute(
            "INSERT INTO test_features (test_id, feature_id) VALUES (?, 987655)", (test["id"],)
        )
        await conn.execute(
            "UPDATE tests SET end_at = '2018-02-01T00:00:00.000000Z' WHERE id = ?", (test["id"],)
        )
    async with seeded.mirror.db.reader() as conn:
        _, by_columns = await both(conn, facts, ["feature", "month"], ["tests"], MetricsFilter())
    assert by_columns[(987_655, "2018-02")] == {"tests": 1}
    # A bug's platforms and fields written alone (write_bugs replaces them with the bug).
    async with seeded.mirror.db.transaction() as conn:
        await conn.execute(
            "INSERT INTO bug_platforms (bug_id, position, os) VALUES (?, 99, 'PlanOS')",
            (wire["id"],),
        )
    assert ("PlanOS",) in await answered_alike(seeded, facts, "platform")
    async with seeded.mirror.db.transaction() as conn:
        await conn.execute(
            "INSERT INTO bug_fields (bug_id, key, value, number) VALUES (?, 'late', '7', 7)",
            (wire["id"],),
        )
    async with seeded.mirror.db.reader() as conn:
        by_sql, by_columns = await both(
            conn,
            facts,
            ["platform", "custom_field:late"],
            ["bugs", "field_sum:late"],
            MetricsFilter(),
        )
    assert by_columns == by_sql
    assert by_columns[("PlanOS", "7")] == {"bugs": 1, "field_sum:late": 7.0}
    assert moved != by_type
    # A test tombstoned takes its bugs (a trigger); a bug moved to another product counts there.
    async with seeded.mirror.db.transaction() as conn:
        await conn.execute(
            "UPDATE tests SET deleted_at = ? WHERE id = ?", (stamp, wire["test"]["id"])
        )
        await conn.execute("UPDATE bugs SET product_id = 555 WHERE id = (SELECT max(id) FROM bugs)")
    gone = await answered_alike(seeded, facts, "product")
    assert (555,) in gone
    # A bug deleted outright, and every bug (a nuke).
    async with seeded.mirror.db.transaction() as conn:
        await conn.execute("DELETE FROM bugs WHERE id = (SELECT min(id) FROM bugs)")
    await answered_alike(seeded, facts, "product")
    await seeded.mirror.empty()
    assert await answered_alike(seeded, facts, "product") == {}
    assert await answered_alike(seeded, facts, "month", "tester") == {}
