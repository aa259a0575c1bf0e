"""Migration 10: what a bug's ``devices`` and custom ``report`` say, in tables the metrics read.

Kept apart from ``migrations.py`` (which lists it after the ninth) so that module stays small.
The rows are derived from a bug's raw JSON only; ``store/bug_details.py`` derives the same rows
in Python for every bug ``write_bugs`` writes, and its tests hold the two to each other.

- ``bug_platforms``: one row per device and browser a bug names (``position`` from 0, in the
  order of the devices, then of each device's browsers); a device without a browser (found in
  an app) is one row whose ``browser`` is NULL. Columns: ``category`` (Desktop, Smartphone,
  Tablet), ``vendor``, ``device`` (the model), ``os`` (the operating system's name: the
  metrics' ``platform``), ``os_version``, ``browser``. A name that is not a string is NULL.
- ``bug_fields``: one row per key of the bug's custom report (``report.content.data``): the
  ``value`` as sent (a string, "" when left blank; NULL when it is not a string) and
  ``number``, the value read as a number when it is exactly one in JSON's grammar (``12``,
  ``-3.5``, ``1e3``: no blanks, no ``+``, no hex) and finite, else NULL. A key sent twice keeps
  its first value; an entry without a string key is left out.
- bugs get ``report_configuration_id``: the report's ``custom_report_configuration_id``.
- Deleting a bug row (a nuke) deletes its rows here (a trigger); a tombstoned bug keeps them
  (readers filter the bug's ``deleted_at``).
"""

from __future__ import annotations

# A value is a number when it is exactly a JSON number: the cheap character checks first (and
# SQLite's own JSON reader after them: since 3.42 it also takes JSON5's ``+1``, ``.5``, ``5.``,
# ``0x1F``, ``Infinity``, which the checks refuse, as they refuse leading zeros), each step
# inside CASE so that json_type is never asked about text that is not JSON.
_IS_NUMBER = """CASE WHEN typeof({v}) = 'text'
    AND ({v} GLOB '[0-9]*' OR {v} GLOB '-[0-9]*')
    AND {v} NOT GLOB '*[^-+.eE0-9]*' AND {v} NOT GLOB '0[0-9]*' AND {v} NOT GLOB '-0[0-9]*'
    AND {v} NOT GLOB '*.' AND {v} NOT GLOB '*.[^0-9]*' AND {v} NOT GLOB '*[^0-9].*'
THEN CASE WHEN json_valid({v}) THEN CASE WHEN json_type({v}) IN ('integer', 'real')
    THEN CASE WHEN abs(CAST(json_extract({v}, '$') AS REAL)) <= 1.7976931348623157e308
        THEN CAST(json_extract({v}, '$') AS REAL) END END END END"""


def _text(json: str, path: str) -> str:
    """The text at ``path`` of the JSON object ``json``, NULL when it is not a string."""
    return f"CASE WHEN json_type({json}, '{path}') = 'text' THEN json_extract({json}, '{path}') END"


BUG_DETAILS = f"""
CREATE TABLE bug_platforms (
    bug_id INTEGER NOT NULL,
    position INTEGER NOT NULL,
    category TEXT,
    vendor TEXT,
    device TEXT,
    os TEXT,
    os_version TEXT,
    browser TEXT,
    PRIMARY KEY (bug_id, position)
) WITHOUT ROWID;

CREATE TABLE bug_fields (
    bug_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT,
    number REAL,
    PRIMARY KEY (bug_id, key)
) WITHOUT ROWID;
CREATE INDEX bug_fields_by_key ON bug_fields (key, value);

ALTER TABLE bugs ADD COLUMN report_configuration_id INTEGER;

CREATE TRIGGER bugs_delete_details AFTER DELETE ON bugs BEGIN
    DELETE FROM bug_platforms WHERE bug_id = old.id;
    DELETE FROM bug_fields WHERE bug_id = old.id;
END;

UPDATE bugs
SET report_configuration_id = json_extract(raw, '$.report.custom_report_configuration_id')
WHERE json_type(raw, '$.report.custom_report_configuration_id') = 'integer';

INSERT INTO bug_platforms (bug_id, position, category, vendor, device, os, os_version, browser)
WITH device AS (
    SELECT b.id AS bug_id, d.key AS at, d.value AS body
    FROM bugs b, json_each(b.raw, '$.devices') d
    WHERE json_type(b.raw, '$.devices') = 'array' AND d.type = 'object'
), named AS (
    SELECT device.bug_id, device.at, w.key AS browser_at,
        CASE WHEN w.type = 'object' THEN {_text("w.value", "$.name")} END AS browser
    FROM device, json_each(device.body, '$.browsers') w
    WHERE json_type(device.body, '$.browsers') = 'array'
), browser AS (
    SELECT * FROM named WHERE browser IS NOT NULL
)
SELECT device.bug_id,
    row_number() OVER (PARTITION BY device.bug_id ORDER BY device.at, browser.browser_at) - 1,
    {_text("device.body", "$.category.name")},
    {_text("device.body", "$.vendor.name")},
    {_text("device.body", "$.devices.name")},
    {_text("device.body", "$.operating_system.name")},
    {_text("device.body", "$.operating_system.version")},
    browser.browser
FROM device LEFT JOIN browser ON browser.bug_id = device.bug_id AND browser.at = device.at;

INSERT INTO bug_fields (bug_id, key, value, number)
WITH entry AS (
    SELECT b.id AS bug_id, e.key AS at, e.value AS body
    FROM bugs b, json_each(b.raw, '$.report.content.data') e
    WHERE json_type(b.raw, '$.report.content.data') = 'array' AND e.type = 'object'
), keyed AS (
    SELECT bug_id, at, {_text("body", "$.key")} AS key, {_text("body", "$.value")} AS value
    FROM entry
), first AS (
    SELECT bug_id, key, value,
        row_number() OVER (PARTITION BY bug_id, key ORDER BY at) AS nth
    FROM keyed WHERE key IS NOT NULL
)
SELECT bug_id, key, value, {_IS_NUMBER.format(v="value")} FROM first WHERE nth = 1;
"""
