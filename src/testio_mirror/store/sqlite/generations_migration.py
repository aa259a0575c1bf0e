"""Migration 11: a generation per product that moves whenever what its bugs and tests count
toward changes.

``query_metrics`` keeps the columns of every live bug and test in memory (``store/bug_facts.py``): a
grouped count over 300,000 bugs is ~15 ms there, against 150 to 1,600 ms in SQLite, whose
GROUP BY sorts every row. It reloads a product's bugs when that product's generation differs
from the one it loaded, so the answers stay exact under every write, whoever makes it (a sync, a
read-through, the triage desk, the tombstone triggers, a nuke): the triggers are the one place
that sees them all.

- ``bug_generations``: one row per product that ever had a bug or a test (``product_id`` -1
  stands for those without a product); rows are never deleted, so a generation never repeats in
  a file.
- A bug's insert or delete moves its product's generation; an update does when a column the
  metrics read changes (for both products, when the bug moved).
- A test's insert, delete or an update of what the metrics read from it (its product, end,
  testing type, status, who created and submitted it, the raw JSON holding its environment,
  deleted_at) moves its product's generation and those of its bugs' products; so does a change
  to the features it covers (test_features), and to a bug's platforms or custom report fields
  (bug_platforms, bug_fields: rows are only ever inserted and deleted).

Two indexes serve the reads: ``bugs_for_stats`` (bug_stats' own, migration 4) gains the three
columns the metrics read besides its own, so a product's bugs load from the index alone (0.4 s
for 300,000 bugs, against 1.5 s through the rows, which hold the raw JSON); and
``tests_for_metrics`` does the same for query_metrics' test side and for the freshness of the
tests in a query's scope (42 ms -> 4 ms on 30,000 tests with a period).
"""

from __future__ import annotations

_BUMP = """INSERT INTO bug_generations (product_id, generation) VALUES (coalesce({pid}, -1), 1)
    ON CONFLICT (product_id) DO UPDATE SET generation = generation + 1;"""

_BUMP_BUGS_OF_TEST = """UPDATE bug_generations SET generation = generation + 1
    WHERE product_id IN (
        SELECT DISTINCT coalesce(product_id, -1) FROM bugs WHERE test_id = {tid});"""

_BUMP_TEST = (
    _BUMP.format(pid="{row}.product_id") + "\n    " + _BUMP_BUGS_OF_TEST.format(tid="{row}.id")
)
_BUMP_FEATURES_OF_TEST = """UPDATE bug_generations SET generation = generation + 1
    WHERE product_id = (SELECT coalesce(product_id, -1) FROM tests WHERE id = {tid});"""
_BUMP_PRODUCT_OF_BUG = """UPDATE bug_generations SET generation = generation + 1
    WHERE product_id = (SELECT coalesce(product_id, -1) FROM bugs WHERE id = {bid});"""
_TEST_COLUMNS = (
    "product_id",
    "end_at",
    "testing_type",
    "status",
    "created_by",
    "submitted_by",
    "raw",
    "deleted_at",
)
_TEST_CHANGED = " OR ".join(f"old.{c} IS NOT new.{c}" for c in _TEST_COLUMNS)

# The bug columns store/bug_facts.py loads: a change to any of them changes an answer. Written
# out, not imported: a migration's text must never change when bug_facts.py does later.
_READ_COLUMNS = (
    "product_id",
    "feature_id",
    "test_id",
    "author",
    "severity",
    "status",
    "auto_accepted",
    "known",
    "reject_reason",
    "reported_at",
    "deleted_at",
)
_CHANGED = " OR ".join(f"old.{c} IS NOT new.{c}" for c in _READ_COLUMNS)

BUG_GENERATIONS = f"""
DROP INDEX bugs_for_stats;
CREATE INDEX bugs_for_stats
ON bugs (product_id, severity, status, feature_id, test_id, author, reported_at,
         auto_accepted, known, reject_reason)
WHERE deleted_at IS NULL;
CREATE INDEX tests_for_metrics
ON tests (product_id, end_at, testing_type, status, created_by, submitted_by, start_at,
          bugs_fetched_at)
WHERE deleted_at IS NULL;

CREATE TABLE bug_generations (
    product_id INTEGER PRIMARY KEY,
    generation INTEGER NOT NULL
);
INSERT INTO bug_generations (product_id, generation)
SELECT coalesce(product_id, -1), 1 FROM bugs UNION SELECT coalesce(product_id, -1), 1 FROM tests;

CREATE TRIGGER bugs_generation_insert AFTER INSERT ON bugs BEGIN
    {_BUMP.format(pid="new.product_id")}
END;
CREATE TRIGGER bugs_generation_delete AFTER DELETE ON bugs BEGIN
    {_BUMP.format(pid="old.product_id")}
END;
CREATE TRIGGER bugs_generation_update AFTER UPDATE ON bugs WHEN {_CHANGED} BEGIN
    {_BUMP.format(pid="old.product_id")}
    {_BUMP.format(pid="new.product_id")}
END;

CREATE TRIGGER tests_generation_insert AFTER INSERT ON tests BEGIN
    {_BUMP_TEST.format(row="new")}
END;
CREATE TRIGGER tests_generation_delete AFTER DELETE ON tests BEGIN
    {_BUMP_TEST.format(row="old")}
END;
CREATE TRIGGER tests_generation_update AFTER UPDATE ON tests WHEN {_TEST_CHANGED} BEGIN
    {_BUMP_TEST.format(row="old")}
    {_BUMP.format(pid="new.product_id")}
END;

CREATE TRIGGER bug_platforms_generation_insert AFTER INSERT ON bug_platforms BEGIN
    {_BUMP_PRODUCT_OF_BUG.format(bid="new.bug_id")}
END;
CREATE TRIGGER bug_platforms_generation_delete AFTER DELETE ON bug_platforms BEGIN
    {_BUMP_PRODUCT_OF_BUG.format(bid="old.bug_id")}
END;
CREATE TRIGGER bug_fields_generation_insert AFTER INSERT ON bug_fields BEGIN
    {_BUMP_PRODUCT_OF_BUG.format(bid="new.bug_id")}
END;
CREATE TRIGGER bug_fields_generation_delete AFTER DELETE ON bug_fields BEGIN
    {_BUMP_PRODUCT_OF_BUG.format(bid="old.bug_id")}
END;
CREATE TRIGGER test_features_generation_insert AFTER INSERT ON test_features BEGIN
    {_BUMP_FEATURES_OF_TEST.format(tid="new.test_id")}
END;
CREATE TRIGGER test_features_generation_delete AFTER DELETE ON test_features BEGIN
    {_BUMP_FEATURES_OF_TEST.format(tid="old.test_id")}
END;
"""
