"""Migration 8: testers (the authors of bugs) as their own entity, one row per tester.

Kept apart from ``migrations.py`` (which lists it as the eighth) so that module stays small.

TestIO names a bug's author only as ``author: {name}``: a tester's identity is that name,
normalised by ``author_key`` (Unicode NFKC, case folded, runs of white space made one space), so
"Björn " and "björn" (composed or not) are one tester. ``testers.key`` is UNIQUE, and every
write of bugs upserts its testers on that key in the bugs' own transaction
(``store/testers.record_testers``): however many processes sync at once, SQLite's single writer
and the constraint leave exactly one row per tester, never a read-then-insert race.

- ``testers``: ``id``, ``key`` (the normalised name), ``name`` (as first stored), and the earliest
  and latest report date of their bugs the mirror has seen (``first_seen_at``,
  ``last_activity_at``; both only ever move outwards).
- bugs get ``tester_id`` (NULL for a bug without an author), and ``bugs_by_tester`` covers what
  ``list_testers`` counts (live bugs by product, tester, severity, status and report date)
  without reading the bug rows.

Existing bugs are read once here: their testers are made from their authors, and each bug gets
its ``tester_id``. The script calls ``author_key`` as an SQL function, which ``migrate``
registers on the connection it migrates with (``SQL_FUNCTIONS``).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable


def author_key(name: str | None) -> str | None:
    """The identity of the tester called ``name``: NFKC, case folded, white space collapsed;
    None for no name (or only white space).

    Example::

        author_key("  Björn\tS ") == author_key("björn s") == "björn s"
    """
    if name is None:
        return None
    key = " ".join(unicodedata.normalize("NFKC", name).casefold().split())
    return key or None


# Functions the migration scripts call, registered by ``migrate`` (deterministic: the same name
# always gives the same key, so SQLite may use them in indexes and constant folding).
SQL_FUNCTIONS: dict[str, Callable[[str | None], str | None]] = {"author_key": author_key}

TESTERS = """
CREATE TABLE testers (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    first_seen_at TEXT,
    last_activity_at TEXT
);

ALTER TABLE bugs ADD COLUMN tester_id INTEGER;

INSERT INTO testers (key, name, first_seen_at, last_activity_at)
SELECT author_key(author), min(author), min(reported_at), max(reported_at)
FROM bugs WHERE author_key(author) IS NOT NULL
GROUP BY author_key(author) ORDER BY min(reported_at), author_key(author);

UPDATE bugs SET tester_id = (SELECT t.id FROM testers t WHERE t.key = author_key(bugs.author))
WHERE author IS NOT NULL;

CREATE INDEX bugs_by_tester
ON bugs (product_id, tester_id, severity, status, reported_at)
WHERE deleted_at IS NULL;
"""
