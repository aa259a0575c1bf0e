"""Bounds the layers share, defined once and importing nothing (the CLI parses with them
before anything heavy loads)."""

from __future__ import annotations

from typing import Final

MAX_ID: Final = 2**63 - 1  # the largest id SQLite's INTEGER holds
