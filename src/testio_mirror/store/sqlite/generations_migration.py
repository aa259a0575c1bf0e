"""Migration 11: a generation per product that moves whenever what its bugs count toward changes.

``query_metrics`` keeps the columns of every live bug in memory (``store/bug_facts.py``): a
grouped count over 300,000 bugs is ~15 ms there, against 150 to 1,600 ms in SQLite, whose
GROUP BY sorts every row. It reloads a product's bugs when that product's generation differs
from the one it loaded, so the answers stay exact under every write, whoever makes it (a sync, a
read-through, the triage desk, the tombstone triggers, a nuke): the triggers are the one place
that sees them all.

- ``bug_generations``: one row per product that ever had a bug (``product_id`` -1 stands for
  bugs without a product); rows are never deleted, so a generation never repeats in a file.
- A bug's insert or delete moves its product's generation; an update does when a column the
  metrics read changes (for both products, when the bug moved).
- A test's insert, delete or an update of what bugs read from it (testing type, status, the raw
  JSON holding its environment, deleted_at) moves the generations of its bugs' products.

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

# The bug columns store/bug_facts.py loads: a change to any of them changes an answer.
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
SELECT DISTINCT coalesce(product_id, -1), 1 FROM bugs;

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
    {_BUMP_BUGS_OF_TEST.format(tid="new.id")}
END;
CREATE TRIGGER tests_generation_delete AFTER DELETE ON tests BEGIN
    {_BUMP_BUGS_OF_TEST.format(tid="old.id")}
END;
CREATE TRIGGER tests_generation_update AFTER UPDATE ON tests
WHEN old.testing_type IS NOT new.testing_type OR old.status IS NOT new.status
    OR old.raw IS NOT new.raw OR old.deleted_at IS NOT new.deleted_at BEGIN
    {_BUMP_BUGS_OF_TEST.format(tid="new.id")}
END;
"""
