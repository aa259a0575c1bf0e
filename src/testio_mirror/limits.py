"""Bounds the layers share, defined once and importing nothing (the CLI parses with them
before anything heavy loads)."""

from __future__ import annotations

from typing import Final

MAX_ID: Final = 2**63 - 1  # the largest id SQLite's INTEGER holds
# The default of TESTIO_MAX_ANSWER_BYTES: about 15,000 tokens, a fair share of a model's context.
DEFAULT_MAX_ANSWER_BYTES: Final = 60_000
