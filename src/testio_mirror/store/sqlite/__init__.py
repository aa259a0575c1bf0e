"""SQLite machinery of the store: the database, migrations, upserts, WHERE clauses, cursors, time
format. Nothing here knows an entity."""
