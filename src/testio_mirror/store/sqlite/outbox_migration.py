"""Migration 7: the outbox of triage changes, their audit, and what ``latest`` needs on bugs.

Kept apart from ``migrations.py`` (which lists it as the seventh) so that module stays small.

- ``changes``: one row per triage change an agent or a person asked for, written before any
  request is sent. ``decision`` says what a change decides (``status`` for accept and reject,
  else the flag it sets): a unique index over the live states allows one live change per bug
  and decision, so nothing is ever sent twice because it was asked twice.
- ``change_events``: every step of every change; append-only (a trigger refuses updates).
- bugs get ``triage`` (the bug's ``TriageState`` as compact JSON, ``[status, known, fixed,
  exported]``, what a conflict compares) and ``triage_seen_at`` (when the mirror first observed
  that state). Existing rows take their triage from ``raw`` and, having no better time,
  ``changed_at`` (their last content change, when the state was last seen to move at the
  latest).

``reject_reasons`` exists since migration 1 (key, name, default_comment, raw, fetched_at).
"""

from __future__ import annotations

OUTBOX = """
CREATE TABLE changes (
    id INTEGER PRIMARY KEY,
    bug_id INTEGER NOT NULL,
    action TEXT NOT NULL
        CHECK (action IN ('accept', 'reject', 'mark_known', 'mark_fixed', 'mark_exported')),
    decision TEXT NOT NULL
        CHECK (decision IN ('status', 'mark_known', 'mark_fixed', 'mark_exported')),
    reason TEXT,
    comment TEXT,
    base_status TEXT,
    base_known INTEGER NOT NULL,
    base_fixed INTEGER NOT NULL,
    base_exported INTEGER NOT NULL,
    strategy TEXT NOT NULL CHECK (strategy IN ('manual', 'server_wins', 'local_wins', 'latest')),
    requested_by TEXT NOT NULL,
    client TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    state TEXT NOT NULL
        CHECK (state IN ('pending', 'sending', 'applied', 'conflict', 'failed', 'cancelled')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    server_side TEXT,
    conflict_seen_at TEXT,
    resolution TEXT CHECK (resolution IN (
        'keep_local', 'keep_server', 'server_wins', 'local_wins', 'latest_local', 'latest_server'
    )),
    resolution_strategy TEXT,
    resolved_by TEXT,
    resolved_at TEXT,
    applied_at TEXT
);
CREATE UNIQUE INDEX changes_one_live ON changes (bug_id, decision)
WHERE state IN ('pending', 'sending', 'conflict');
CREATE INDEX changes_by_state ON changes (state, id);
CREATE INDEX changes_by_bug ON changes (bug_id, id);

CREATE TABLE change_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    change_id INTEGER NOT NULL REFERENCES changes (id),
    at TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN (
        'created', 'sending', 'answer', 'reconciled', 'conflict', 'resolved', 'rebased',
        'cancelled', 'failed', 'applied'
    )),
    actor TEXT NOT NULL,
    attempt INTEGER,
    outcome TEXT,
    http_status INTEGER,
    message TEXT,
    data TEXT
);
CREATE INDEX change_events_by_change ON change_events (change_id, id);
CREATE INDEX change_events_by_kind_time ON change_events (kind, at);

CREATE TRIGGER change_events_append_only BEFORE UPDATE ON change_events BEGIN
    SELECT RAISE (ABORT, 'change_events is append-only');
END;

ALTER TABLE bugs ADD COLUMN triage TEXT;
ALTER TABLE bugs ADD COLUMN triage_seen_at TEXT;
UPDATE bugs SET
    triage = json_array(
        CASE json_type(raw, '$.status') WHEN 'text' THEN json_extract(raw, '$.status') END,
        coalesce(json_type(raw, '$.known') = 'true', 0),
        coalesce(json_type(raw, '$.fixed_at'), 'null') != 'null',
        coalesce(json_type(raw, '$.exported_at'), 'null') != 'null'
    ),
    triage_seen_at = changed_at;
"""
