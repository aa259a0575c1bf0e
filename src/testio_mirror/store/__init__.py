"""The mirror: SQLite schema and migrations, repositories with freshness and read-through.

All SQL of the project lives in this package. Start with ``mirror.Mirror``. The package itself
imports nothing: the server loads its modules only after answering its first requests, and any
import of a module here runs this file first.
"""
