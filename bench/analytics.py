"""W7: the analytics answers a customer success manager waits for, on a mirror that holds every
bug: ``query_metrics`` by two dimensions (several pairs, metric sets and filters, one with
``compare``) and ``quality_report`` of one product, each called over stdio as an agent does.

Imported by ``bench/run.py``; the calls are made on the home W3 synced with bugs, so no answer
reads through (the bugs are there), and the figures are the mirror's own work plus MCP.
"""

from __future__ import annotations

import time
from typing import Any

from mcp import Client

ANALYTICS_CALLS = 30
# A period that holds most of the sandbox's data (its tests end in the months before
# DEFAULT_ANCHOR), and the one before it of equal length for compare.
SINCE = "2026-05-01T00:00:00Z"
UNTIL = "2026-11-01T00:00:00Z"
BUG_METRICS = [
    "bug_count",
    "accepted",
    "rejected",
    "forwarded",
    "acceptance_rate",
    "active_acceptance_rate",
    "rejection_rate",
    "review_rate",
    "severity_score",
    "critical_count",
    "active_testers",
]


def analytics_mix(product_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, tool, arguments) of every W7 call."""
    period = {"since": SINCE, "until": UNTIL}
    return [
        (
            "query_metrics product x month",
            "query_metrics",
            {
                "metrics": [*BUG_METRICS, "test_count", "bugs_per_test"],
                "dimensions": ["product", "month"],
            },
        ),
        (
            "query_metrics feature x severity",
            "query_metrics",
            {"metrics": BUG_METRICS, "dimensions": ["feature", "severity"], **period},
        ),
        (
            "query_metrics tester x status",
            "query_metrics",
            {"metrics": ["bug_count", "critical_count"], "dimensions": ["tester", "status"]},
        ),
        (
            "query_metrics week x testing_type, compare",
            "query_metrics",
            {
                "metrics": ["bug_count", "acceptance_rate", "test_count"],
                "dimensions": ["week", "testing_type"],
                "compare": True,
                **period,
            },
        ),
        (
            "query_metrics test x known, one product",
            "query_metrics",
            {
                "metrics": ["bug_count"],
                "dimensions": ["test", "known"],
                "product_ids": [product_id],
            },
        ),
        (
            "query_metrics platform x month, a period",
            "query_metrics",
            {
                "metrics": ["bug_count", "acceptance_rate"],
                "dimensions": ["platform", "month"],
                **period,
            },
        ),
        (
            "query_metrics custom field x product",
            "query_metrics",
            {
                "metrics": ["bug_count", "field_mean:affected_users"],
                "dimensions": ["custom_field:customer_impact", "product"],
            },
        ),
        ("quality_report one product", "quality_report", {"product_ids": [product_id], **period}),
    ]


async def timed(client: Client, tool: str, arguments: dict[str, Any]) -> float:
    """One call's time in ms; a failed call stops the bench (a timing of an error means nothing)."""
    started = time.perf_counter()
    result = await client.call_tool(tool, arguments)
    elapsed = (time.perf_counter() - started) * 1000
    if result.is_error:
        raise RuntimeError(f"{tool}({arguments}) failed: {result.content}")
    return elapsed


async def analytics_latencies(client: Client, product_id: int) -> dict[str, list[float]]:
    """Each W7 call's times in ms, after one warm-up call."""
    timings: dict[str, list[float]] = {}
    for label, tool, arguments in analytics_mix(product_id):
        await timed(client, tool, arguments)
        timings[label] = [await timed(client, tool, arguments) for _ in range(ANALYTICS_CALLS)]
    return timings
