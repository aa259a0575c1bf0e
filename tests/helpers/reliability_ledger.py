"""The reliability suite's scale (quick or long form) and its ledger of what it tried.

`make test` runs the quick form; `make reliability` sets ``TESTIO_RELIABILITY=long`` for more
trials and larger data. Every test records what it did in the session ledger, and the summary
table (faults injected, kills, trials, mismatches, worst query latency during a sync) is
printed at the end of the run by ``tests/reliability/conftest.py``.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

from testio_mirror.sandbox import DatasetSpec

FORM_VARIABLE = "TESTIO_RELIABILITY"


@dataclass(frozen=True)
class Scale:
    """How hard the suite tries: trials per kind of test and the size of the data."""

    form: str
    kill_trials: int
    fault_rounds: int
    concurrent_calls: int
    hypothesis_examples: int
    dataset: DatasetSpec


QUICK = Scale(
    form="quick",
    kill_trials=5,
    fault_rounds=1,
    concurrent_calls=40,
    hypothesis_examples=40,
    dataset=DatasetSpec(seed=11, products=3, section_products=1, tests_per_product=60),
)
LONG = Scale(
    form="long",
    kill_trials=50,
    fault_rounds=5,
    concurrent_calls=400,
    hypothesis_examples=400,
    dataset=DatasetSpec(seed=11, products=5, section_products=1, tests_per_product=400),
)


def current_scale() -> Scale:
    """The form asked for by ``TESTIO_RELIABILITY`` (``quick`` unless it says ``long``)."""
    form = os.environ.get(FORM_VARIABLE, "quick").strip().lower()
    if form not in ("quick", "long"):
        raise ValueError(f"{FORM_VARIABLE} must be 'quick' or 'long', not {form!r}")
    return LONG if form == "long" else QUICK


@dataclass
class Row:
    """What one area of the suite tried, summed over its tests."""

    trials: int = 0
    faults: int = 0
    kills: int = 0
    mismatches: int = 0
    worst_query_ms: float | None = None


@dataclass
class Ledger:
    """Session-wide tally, safe to add to from any thread."""

    rows: dict[str, Row] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(
        self,
        area: str,
        *,
        trials: int = 1,
        faults: int = 0,
        kills: int = 0,
        mismatches: int = 0,
        worst_query_ms: float | None = None,
    ) -> None:
        """Add one test's tally to ``area``; record before asserting, so failures show too."""
        with self._lock:
            row = self.rows.setdefault(area, Row())
            row.trials += trials
            row.faults += faults
            row.kills += kills
            row.mismatches += mismatches
            if worst_query_ms is not None:
                row.worst_query_ms = max(row.worst_query_ms or 0.0, worst_query_ms)

    def table(self, form: str) -> list[str]:
        """The summary table as lines of text, with a total row."""
        header = (
            f"{'area':<24} {'trials':>7} {'faults':>7} {'kills':>6} {'mismatch':>9}"
            f" {'worst query ms':>15}"
        )
        lines = [f"reliability summary ({form} form)", header, "-" * len(header)]
        total = Row()
        for area in sorted(self.rows):
            row = self.rows[area]
            lines.append(_line(area, row))
            total.trials += row.trials
            total.faults += row.faults
            total.kills += row.kills
            total.mismatches += row.mismatches
            if row.worst_query_ms is not None:
                total.worst_query_ms = max(total.worst_query_ms or 0.0, row.worst_query_ms)
        lines.append("-" * len(header))
        lines.append(_line("total", total))
        return lines


def _line(area: str, row: Row) -> str:
    worst = "-" if row.worst_query_ms is None else f"{row.worst_query_ms:.1f}"
    return (
        f"{area:<24} {row.trials:>7} {row.faults:>7} {row.kills:>6} {row.mismatches:>9} {worst:>15}"
    )


LEDGER = Ledger()
