"""Fixtures of the reliability suite: its scale, its ledger, and the summary table at the end."""

from __future__ import annotations

import pytest

from tests.helpers.reliability_ledger import LEDGER, Ledger, Scale, current_scale


@pytest.fixture(scope="session")
def scale() -> Scale:
    """Quick form under `make test`, long form under `make reliability`."""
    return current_scale()


@pytest.fixture(scope="session")
def ledger() -> Ledger:
    """Record what each test tried (trials, faults, kills, mismatches, worst query latency)."""
    return LEDGER


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not LEDGER.rows:
        return
    terminalreporter.section("reliability")
    for line in LEDGER.table(current_scale().form):
        terminalreporter.write_line(line)
