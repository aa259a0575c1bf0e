"""Numbered schema migrations, tracked by ``PRAGMA user_version``.

Migration N (1-based) takes the schema from version N-1 to N. They run at open, each in its own
``BEGIN IMMEDIATE`` transaction that re-reads the version first, so two processes opening the same
file at once apply each migration exactly once. Never edit a released migration: add the next one.

Times are stored as fixed-width ISO 8601 UTC text (``2026-11-21T05:30:00.000000Z``), so text order
is time order. Each entity row keeps ``raw`` (the JSON as received), ``content_hash`` (what decides
"changed"), ``fetched_at`` (last seen upstream), ``changed_at`` (last content change) and
``deleted_at`` (the tombstone: it vanished upstream).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable

import aiosqlite

from testio_mirror.store.sqlite.bug_details_migration import BUG_DETAILS
from testio_mirror.store.sqlite.generations_migration import BUG_GENERATIONS
from testio_mirror.store.sqlite.outbox_migration import OUTBOX
from testio_mirror.store.sqlite.testers_migration import SQL_FUNCTIONS, TESTERS

_ENTITY_COLUMNS = """
    raw TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    fetched_at TEXT NOT NULL,
    changed_at TEXT NOT NULL,
    deleted_at TEXT
"""

ENTITIES = f"""
CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    name TEXT,
    description TEXT,
    type TEXT,
    default_section_id INTEGER,
    has_sections INTEGER NOT NULL DEFAULT 0,
    features_fetched_at TEXT,
    {_ENTITY_COLUMNS}
);

CREATE TABLE sections (
    id INTEGER PRIMARY KEY,
    product_id INTEGER NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    name TEXT,
    is_default INTEGER NOT NULL DEFAULT 0,
    {_ENTITY_COLUMNS}
);
CREATE INDEX sections_by_product ON sections (product_id);

CREATE TABLE features (
    id INTEGER PRIMARY KEY,
    product_id INTEGER NOT NULL,
    title TEXT,
    description TEXT,
    howtofind TEXT,
    user_stories TEXT NOT NULL DEFAULT '[]',
    {_ENTITY_COLUMNS}
);
CREATE INDEX features_by_product ON features (product_id);

CREATE TABLE tests (
    id INTEGER PRIMARY KEY,
    product_id INTEGER NOT NULL,
    section_id INTEGER,
    title TEXT,
    status TEXT,
    testing_type TEXT,
    goal TEXT,
    instructions TEXT,
    out_of_scope TEXT,
    start_at TEXT,
    end_at TEXT,
    review_status TEXT,
    created_by TEXT,
    submitted_by TEXT,
    bugs_fetched_at TEXT,
    {_ENTITY_COLUMNS}
);
CREATE INDEX tests_by_product_newest ON tests (product_id, end_at DESC, id DESC);
CREATE INDEX tests_by_status ON tests (status);

CREATE TABLE test_features (
    test_id INTEGER NOT NULL REFERENCES tests (id) ON DELETE CASCADE,
    feature_id INTEGER NOT NULL,
    test_feature_id INTEGER,
    title TEXT,
    PRIMARY KEY (test_id, feature_id)
) WITHOUT ROWID;
CREATE INDEX test_features_by_feature ON test_features (feature_id);

CREATE TABLE bugs (
    id INTEGER PRIMARY KEY,
    test_id INTEGER,
    product_id INTEGER,
    feature_id INTEGER,
    title TEXT,
    severity TEXT,
    status TEXT,
    auto_accepted INTEGER,
    known INTEGER,
    actual_result TEXT,
    expected_result TEXT,
    steps TEXT NOT NULL DEFAULT '[]',
    reported_at TEXT,
    exported_at TEXT,
    author TEXT,
    reject_reason TEXT,
    {_ENTITY_COLUMNS}
);
CREATE INDEX bugs_by_test ON bugs (test_id);
CREATE INDEX bugs_by_product_newest ON bugs (product_id, reported_at DESC, id DESC);
CREATE INDEX bugs_by_feature ON bugs (feature_id);
CREATE INDEX bugs_by_severity_status ON bugs (severity, status);

-- A test that vanished takes its bugs with it (they are re-fetched if it ever comes back).
CREATE TRIGGER tests_tombstone_bugs AFTER UPDATE OF deleted_at ON tests
WHEN new.deleted_at IS NOT NULL AND old.deleted_at IS NULL BEGIN
    UPDATE bugs SET deleted_at = new.deleted_at WHERE test_id = new.id AND deleted_at IS NULL;
    UPDATE tests SET bugs_fetched_at = NULL WHERE id = new.id;
END;

CREATE TABLE reject_reasons (
    key TEXT PRIMARY KEY,
    name TEXT,
    default_comment TEXT,
    raw TEXT NOT NULL,
    fetched_at TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE users (
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('tester', 'customer')),
    first_seen_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    PRIMARY KEY (name, role)
) WITHOUT ROWID;

-- When a whole collection (say, the product list) was last fetched.
CREATE TABLE collection_fetches (
    key TEXT PRIMARY KEY,
    fetched_at TEXT NOT NULL
) WITHOUT ROWID;
"""

SYNC_BOOKKEEPING = """
-- One "run" row per sync run, updated at each phase and at the end (counters derive from these),
-- plus one row per notable event of a run: warnings, errors, a reclaimed lock.
CREATE TABLE sync_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    trigger TEXT,
    status TEXT,
    phase TEXT,
    message TEXT,
    finished_at TEXT,
    duration_seconds REAL,
    items_synced INTEGER,
    data TEXT
);
CREATE INDEX sync_events_by_run ON sync_events (run_id, id);
CREATE INDEX sync_events_by_kind_time ON sync_events (kind, at);

-- Where each product's test listing stands, committed with every page it writes.
CREATE TABLE listing_state (
    product_id INTEGER PRIMARY KEY,
    next_page INTEGER NOT NULL DEFAULT 1,
    complete INTEGER NOT NULL DEFAULT 0,
    full_listing INTEGER NOT NULL DEFAULT 0,
    run_id TEXT,
    started_at TEXT,
    finished_at TEXT,
    last_full_listing_at TEXT
);
"""

# Row ids in the index encode (kind, entity id) so a trigger can replace one entry by rowid.
SEARCH = """
CREATE VIRTUAL TABLE search_index USING fts5 (
    kind UNINDEXED,
    entity_id UNINDEXED,
    product_id UNINDEXED,
    title,
    body,
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER tests_search_insert AFTER INSERT ON tests WHEN new.deleted_at IS NULL BEGIN
    INSERT INTO search_index (rowid, kind, entity_id, product_id, title, body)
    VALUES (new.id * 4 + 1, 'test', new.id, new.product_id, coalesce(new.title, ''),
            coalesce(new.goal, ''));
END;
CREATE TRIGGER tests_search_update AFTER UPDATE OF title, goal, product_id, deleted_at ON tests
BEGIN
    DELETE FROM search_index WHERE rowid = old.id * 4 + 1;
    INSERT INTO search_index (rowid, kind, entity_id, product_id, title, body)
    SELECT new.id * 4 + 1, 'test', new.id, new.product_id, coalesce(new.title, ''),
           coalesce(new.goal, '')
    WHERE new.deleted_at IS NULL;
END;
CREATE TRIGGER tests_search_delete AFTER DELETE ON tests BEGIN
    DELETE FROM search_index WHERE rowid = old.id * 4 + 1;
END;

CREATE TRIGGER features_search_insert AFTER INSERT ON features WHEN new.deleted_at IS NULL BEGIN
    INSERT INTO search_index (rowid, kind, entity_id, product_id, title, body)
    VALUES (new.id * 4 + 2, 'feature', new.id, new.product_id, coalesce(new.title, ''),
            coalesce(new.description, ''));
END;
CREATE TRIGGER features_search_update
AFTER UPDATE OF title, description, product_id, deleted_at ON features BEGIN
    DELETE FROM search_index WHERE rowid = old.id * 4 + 2;
    INSERT INTO search_index (rowid, kind, entity_id, product_id, title, body)
    SELECT new.id * 4 + 2, 'feature', new.id, new.product_id, coalesce(new.title, ''),
           coalesce(new.description, '')
    WHERE new.deleted_at IS NULL;
END;
CREATE TRIGGER features_search_delete AFTER DELETE ON features BEGIN
    DELETE FROM search_index WHERE rowid = old.id * 4 + 2;
END;

CREATE TRIGGER bugs_search_insert AFTER INSERT ON bugs WHEN new.deleted_at IS NULL BEGIN
    INSERT INTO search_index (rowid, kind, entity_id, product_id, title, body)
    VALUES (new.id * 4 + 3, 'bug', new.id, new.product_id, coalesce(new.title, ''),
            trim(coalesce(new.actual_result, '') || ' ' || coalesce(new.expected_result, '')));
END;
CREATE TRIGGER bugs_search_update
AFTER UPDATE OF title, actual_result, expected_result, product_id, deleted_at ON bugs BEGIN
    DELETE FROM search_index WHERE rowid = old.id * 4 + 3;
    INSERT INTO search_index (rowid, kind, entity_id, product_id, title, body)
    SELECT new.id * 4 + 3, 'bug', new.id, new.product_id, coalesce(new.title, ''),
           trim(coalesce(new.actual_result, '') || ' ' || coalesce(new.expected_result, ''))
    WHERE new.deleted_at IS NULL;
END;
CREATE TRIGGER bugs_search_delete AFTER DELETE ON bugs BEGIN
    DELETE FROM search_index WHERE rowid = old.id * 4 + 3;
END;

-- Index what earlier versions already hold.
INSERT INTO search_index (rowid, kind, entity_id, product_id, title, body)
SELECT id * 4 + 1, 'test', id, product_id, coalesce(title, ''), coalesce(goal, '')
FROM tests WHERE deleted_at IS NULL;
INSERT INTO search_index (rowid, kind, entity_id, product_id, title, body)
SELECT id * 4 + 2, 'feature', id, product_id, coalesce(title, ''), coalesce(description, '')
FROM features WHERE deleted_at IS NULL;
INSERT INTO search_index (rowid, kind, entity_id, product_id, title, body)
SELECT id * 4 + 3, 'bug', id, product_id, coalesce(title, ''),
       trim(coalesce(actual_result, '') || ' ' || coalesce(expected_result, ''))
FROM bugs WHERE deleted_at IS NULL;
"""

# bug_stats counts live bugs of a product by one of these columns: this index answers it without
# reading the bug rows themselves (each holds its raw JSON, about 1 KB).
STATS_INDEX = """
CREATE INDEX bugs_for_stats
ON bugs (product_id, severity, status, feature_id, test_id, author, reported_at)
WHERE deleted_at IS NULL;
"""

# Listings that name no product (list_bugs and list_tests without product_id, with or without
# other filters) walk these newest first and stop at the page's end, instead of sorting every
# live row (docs/performance.md has the figures). The severity index goes: the planner took it
# for `severity IN (...)` and then sorted a sixth of all bugs; nothing else used it.
# Every bug listing and bug_stats also says how current the bug lists are (how many tests, how
# many never fetched, the oldest fetch): tests_bug_freshness answers that without reading the
# test rows.
NEWEST_FIRST_INDEXES = """
DROP INDEX bugs_by_severity_status;
CREATE INDEX bugs_newest ON bugs (reported_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX tests_newest ON tests (end_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX tests_bug_freshness ON tests (product_id, bugs_fetched_at) WHERE deleted_at IS NULL;
"""

# A product that leaves the account takes what hangs off it, whoever tombstones it (the product
# list of a sync, a read-through that TestIO answers 404 for): its sections, features, tests
# (and through tests_tombstone_bugs their bugs) and any bug naming it. Its listing state goes and
# its features are marked never fetched, so a product that comes back is listed in full and its
# features fetched again: each part is restored (deleted_at cleared) as it is written again.
# Products tombstoned before this migration lose their parts now. The mirror also remembers
# which account it holds (the base URL and a keyed fingerprint of base URL and token, never the
# token), so a home is never filled from two accounts (store/account.py).
ACCOUNT_AND_PRODUCT_REMOVAL = """
CREATE TRIGGER products_tombstone_parts AFTER UPDATE OF deleted_at ON products
WHEN new.deleted_at IS NOT NULL AND old.deleted_at IS NULL BEGIN
    UPDATE sections SET deleted_at = new.deleted_at
    WHERE product_id = new.id AND deleted_at IS NULL;
    UPDATE features SET deleted_at = new.deleted_at
    WHERE product_id = new.id AND deleted_at IS NULL;
    UPDATE tests SET deleted_at = new.deleted_at WHERE product_id = new.id AND deleted_at IS NULL;
    UPDATE tests SET bugs_fetched_at = NULL
    WHERE id IN (SELECT test_id FROM bugs WHERE product_id = new.id AND deleted_at IS NULL);
    UPDATE bugs SET deleted_at = new.deleted_at WHERE product_id = new.id AND deleted_at IS NULL;
    UPDATE products SET features_fetched_at = NULL WHERE id = new.id;
    DELETE FROM listing_state WHERE product_id = new.id;
END;

UPDATE tests SET deleted_at = (SELECT p.deleted_at FROM products p WHERE p.id = tests.product_id)
WHERE deleted_at IS NULL
AND product_id IN (SELECT id FROM products WHERE deleted_at IS NOT NULL);
UPDATE bugs SET deleted_at = (SELECT p.deleted_at FROM products p WHERE p.id = bugs.product_id)
WHERE deleted_at IS NULL
AND product_id IN (SELECT id FROM products WHERE deleted_at IS NOT NULL);
UPDATE features SET deleted_at = (
    SELECT p.deleted_at FROM products p WHERE p.id = features.product_id
)
WHERE deleted_at IS NULL
AND product_id IN (SELECT id FROM products WHERE deleted_at IS NOT NULL);
UPDATE sections SET deleted_at = (
    SELECT p.deleted_at FROM products p WHERE p.id = sections.product_id
)
WHERE deleted_at IS NULL
AND product_id IN (SELECT id FROM products WHERE deleted_at IS NOT NULL);
UPDATE products SET features_fetched_at = NULL WHERE deleted_at IS NOT NULL;
DELETE FROM listing_state
WHERE product_id IN (SELECT id FROM products WHERE deleted_at IS NOT NULL);

-- One row: the account this mirror holds.
CREATE TABLE mirror_account (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    base_url TEXT NOT NULL,
    salt TEXT NOT NULL,
    token_fingerprint TEXT,
    bound_at TEXT NOT NULL
);
"""

# Test-case tests (``testing_type`` null): their cases and executions, read through per test
# (store/test_cases.py). A test's cases and its executions are each a complete list, replaced
# whole at every fetch, so the rows carry no hash: ``test_case_fetches`` says when the test's
# lists were fetched (the freshness of both) and whether TestIO answered 404, "not a test-case
# test". A test that vanishes takes its cases along, as it takes its bugs: they are tombstoned
# and the fetch is forgotten, so a test that comes back is asked again.
TEST_CASES = """
CREATE TABLE test_case_fetches (
    test_id INTEGER PRIMARY KEY,
    product_id INTEGER NOT NULL,
    fetched_at TEXT NOT NULL,
    not_a_test_case INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE test_cases (
    test_id INTEGER NOT NULL,
    id INTEGER NOT NULL,
    position INTEGER NOT NULL,
    title TEXT,
    steps TEXT NOT NULL DEFAULT '[]',
    raw TEXT NOT NULL,
    fetched_at TEXT NOT NULL,
    deleted_at TEXT,
    PRIMARY KEY (test_id, id)
) WITHOUT ROWID;

CREATE TABLE test_case_executions (
    test_id INTEGER NOT NULL,
    position INTEGER NOT NULL,
    test_case_id INTEGER NOT NULL,
    status TEXT,
    tester_name TEXT,
    steps TEXT NOT NULL DEFAULT '[]',
    executed_at TEXT,
    raw TEXT NOT NULL,
    fetched_at TEXT NOT NULL,
    deleted_at TEXT,
    PRIMARY KEY (test_id, position)
) WITHOUT ROWID;

CREATE TRIGGER tests_tombstone_test_cases AFTER UPDATE OF deleted_at ON tests
WHEN new.deleted_at IS NOT NULL AND old.deleted_at IS NULL BEGIN
    UPDATE test_cases SET deleted_at = new.deleted_at
    WHERE test_id = new.id AND deleted_at IS NULL;
    UPDATE test_case_executions SET deleted_at = new.deleted_at
    WHERE test_id = new.id AND deleted_at IS NULL;
    DELETE FROM test_case_fetches WHERE test_id = new.id;
END;
"""


MIGRATIONS: tuple[str, ...] = (
    ENTITIES,
    SYNC_BOOKKEEPING,
    SEARCH,
    STATS_INDEX,
    NEWEST_FIRST_INDEXES,
    ACCOUNT_AND_PRODUCT_REMOVAL,
    OUTBOX,  # 7: the outbox of triage changes (outbox_migration.py)
    TESTERS,  # 8: testers, one row per normalised name (testers_migration.py)
    TEST_CASES,  # 9: test-case tests' cases and executions, and when they were fetched
    BUG_DETAILS,  # 10: bugs' platforms and custom report fields (bug_details_migration.py)
    BUG_GENERATIONS,  # 11: what query_metrics' in-memory bug columns reload by
)
LATEST_VERSION = len(MIGRATIONS)


def statements(script: str) -> list[str]:
    """Split a script into complete statements (trigger bodies hold semicolons of their own)."""
    found: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        if not buffer and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            found.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise ValueError(f"incomplete SQL statement in migration: {buffer.strip()[:60]}")
    return found


async def migrate(
    connection: aiosqlite.Connection,
    migrations: tuple[str, ...],
    begin: Callable[[], Awaitable[object]] | None = None,
) -> int:
    """Apply the migrations the database lacks; returns the version it ends at. ``begin``
    starts each one's write transaction (``Database`` waits for another process's lock)."""
    for name, function in SQL_FUNCTIONS.items():  # what the scripts call (author_key)
        await connection.create_function(name, 1, function, deterministic=True)
    for version, script in enumerate(migrations, start=1):
        if await user_version(connection) >= version:
            continue  # read without the write lock: an up-to-date file is not written
        if begin is None:
            await connection.execute("BEGIN IMMEDIATE")
        else:
            await begin()
        try:
            current = await user_version(connection)
            if current >= version:
                await connection.rollback()
                continue
            for statement in statements(script):
                await connection.execute(statement)
            await connection.execute(f"PRAGMA user_version = {version}")
        except BaseException:
            await connection.rollback()
            raise
        await connection.commit()
    return await user_version(connection)


async def user_version(connection: aiosqlite.Connection) -> int:
    rows = list(await connection.execute_fetchall("PRAGMA user_version"))
    return int(rows[0][0])
