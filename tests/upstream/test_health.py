"""What an answer to the health check says."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from testio_mirror.upstream.health import report_for_status

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "state", "words"),
    [
        (200, "healthy", "HTTP 200"),
        (204, "healthy", "HTTP 204"),
        (401, "unauthorized", "TESTIO_CUSTOMER_API_TOKEN"),
        (403, "unauthorized", "TESTIO_CUSTOMER_API_TOKEN"),
        (429, "rate_limited", "slow down"),
        (404, "unreachable", "not answering normally"),
        (503, "unreachable", "not answering normally"),
    ],
)
def test_report_for_status(status: int, state: str, words: str) -> None:
    report = report_for_status(status, NOW, 12.5)
    assert (report.state, report.checked_at, report.latency_ms) == (state, NOW, 12.5)
    assert words in report.detail
