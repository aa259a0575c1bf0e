"""What ``sync`` shows without a terminal: phase lines, periodic summaries, one run summary."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from testio_mirror.cli.sync_output import (
    PhaseLines,
    RunSummaryFilter,
    distinct_errors,
    outbox_lines,
)
from testio_mirror.sync.models import PhaseStats, SyncPhase, SyncResult, SyncStatus, SyncTrigger
from testio_mirror.sync.run import RunView
from testio_mirror.sync.status import OutboxStatus
from testio_mirror.triage import CHANGE_STATES

PHASES = [SyncPhase.PRODUCTS, SyncPhase.FEATURES, SyncPhase.NEW_TESTS, SyncPhase.BUGS]
NOW = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def _counts() -> dict[str, int]:
    return {"products": 3, "tests": 120}


def _result(status: SyncStatus, stats: dict[str, PhaseStats]) -> SyncResult:
    return SyncResult(
        run_id="20260101T000000-abcdef12",
        trigger=SyncTrigger.CLI,
        status=status,
        phases=PHASES,
        phases_completed=[SyncPhase(name) for name in stats],
        stats=stats,
        api_requests=sum(s.api_requests for s in stats.values()),
        retries=0,
        warnings=[],
        errors=[] if status is SyncStatus.SUCCESS else ["bugs: broken"],
        started_at=NOW,
        finished_at=NOW,
        duration_seconds=1.5,
    )


def _lines(view: RunView, clock: Clock, written: list[str]) -> PhaseLines:
    return PhaseLines(
        written.append, lambda: view, counts=_counts, requests=lambda: 48, clock=clock
    )


def test_a_line_when_each_phase_starts_and_ends_not_one_per_step() -> None:
    view = RunView("r", SyncTrigger.CLI, PHASES, NOW)
    written: list[str] = []
    lines = _lines(view, Clock(), written)
    view.phase = SyncPhase.PRODUCTS
    lines.step(1, 1, "products: 3")
    assert written == ["products: started"]
    view.stats["products"] = PhaseStats(fetched=3, inserted=3, api_requests=1)
    view.phase = SyncPhase.FEATURES
    for done in range(2, 60):
        lines.step(done, 60, f"features of product {done}: 6")
    assert written == [
        "products: started",
        "products: done, 3 fetched, 3 new, 0 updated, 0 unchanged, 0 deleted, 1 request",
        "features: started",
    ]
    # new_tests ran entirely between two looks: it still gets both lines, in order.
    view.stats["features"] = PhaseStats(fetched=18, unchanged=18, api_requests=4)
    view.stats["new_tests"] = PhaseStats(fetched=180, updated=2, api_requests=30, retries=1)
    view.phase = SyncPhase.BUGS
    lines.step(60, 61, "bugs of 15 tests: 60")
    assert written[3:] == [
        "features: done, 18 fetched, 0 new, 0 updated, 18 unchanged, 0 deleted, 4 requests",
        "new_tests: started",
        "new_tests: done, 180 fetched, 0 new, 2 updated, 0 unchanged, 0 deleted, 30 requests "
        "(1 retried)",
        "bugs: started",
    ]
    lines.finish(
        _result(SyncStatus.SUCCESS, {**view.stats, "bugs": PhaseStats(fetched=720, inserted=720)})
    )
    assert written[-1].startswith("bugs: done, 720 fetched, 720 new")
    assert len(written) == 8


def test_a_phase_that_never_ended_says_so() -> None:
    view = RunView("r", SyncTrigger.CLI, PHASES, NOW)
    written: list[str] = []
    lines = _lines(view, Clock(), written)
    view.phase = SyncPhase.PRODUCTS
    lines.step(1, 1, "products: failed")
    lines.finish(_result(SyncStatus.FAILED, {}))
    assert written == ["products: started", "products: not finished"]


def test_a_summary_every_interval_with_requests_and_what_the_mirror_holds() -> None:
    view = RunView("r", SyncTrigger.CLI, [SyncPhase.NEW_TESTS], NOW)
    view.phase = SyncPhase.NEW_TESTS
    clock = Clock()
    written: list[str] = []
    lines = _lines(view, clock, written)
    lines.step(40, 90, "product 101: page 3")
    asyncio.run(lines.poll())
    assert written == ["new_tests: started"]  # no summary before the interval has passed
    clock.now += 5.0
    asyncio.run(lines.poll())
    assert written[1:] == [
        "... 5 s: new_tests, 40 of ~90 steps, 48 requests; the mirror holds 3 products, 120 tests"
    ]
    clock.now += 1.0
    asyncio.run(lines.poll())
    assert len(written) == 2  # the next one is due 5 s after the last


@pytest.mark.parametrize(
    "status",
    [
        SyncStatus.SUCCESS,
        SyncStatus.PARTIAL,
        SyncStatus.FAILED,
        SyncStatus.CANCELLED,
        SyncStatus.INTERRUPTED,
    ],
)
def test_the_services_run_summary_is_dropped_other_records_pass(status: SyncStatus) -> None:
    summary = _result(status, {"products": PhaseStats(fetched=3)}).summary()
    keep = RunSummaryFilter()

    def record(name: str, message: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.WARNING, __file__, 1, message, None, None)

    assert not keep.filter(record("testio_mirror.sync", summary))
    assert keep.filter(record("testio_mirror.sync", "sync r started (cli): products"))
    assert keep.filter(record("testio_mirror.upstream", summary))


def test_an_error_another_one_already_says_is_printed_once() -> None:
    errors = ["products: GET products: down", "GET products: down", "tests: x", "tests: x"]
    assert distinct_errors(errors) == ["products: GET products: down", "tests: x"]


def _outbox(**given: Any) -> OutboxStatus:
    empty: dict[str, Any] = {
        "changes": dict.fromkeys(CHANGE_STATES, 0),
        "oldest_pending": None,
        "conflicts": {"detected": {}, "resolved": {}, "resolutions": {}, "last_run": None},
        "last_push_at": None,
        "last_applied_at": None,
    }
    return OutboxStatus.model_validate({**empty, **given})


def test_an_empty_outbox_says_no_changes_yet() -> None:
    assert outbox_lines(_outbox()) == ["Triage outbox: no changes yet"]


def test_the_outbox_lines_say_only_what_there_is() -> None:
    changes = {**dict.fromkeys(CHANGE_STATES, 0), "applied": 3}
    applied_only = _outbox(changes=changes, last_push_at=NOW, last_applied_at=NOW)
    assert outbox_lines(applied_only) == [
        "Triage outbox: 3 applied",
        "  last push: 2026-01-01T00:00:00Z",
    ]


def test_the_outbox_lines_name_the_oldest_pending_and_the_conflicts() -> None:
    changes = {**dict.fromkeys(CHANGE_STATES, 0), "pending": 2, "conflict": 1, "cancelled": 1}
    counts = {"detected": {"manual": 2}, "resolved": {"manual": 1}}
    outbox = _outbox(
        changes=changes,
        oldest_pending={"change_id": 7, "created_at": NOW, "age_seconds": 185.0},
        conflicts={
            **counts,
            "resolutions": {"keep_server": 1},
            "last_run": {
                "since": NOW,
                "detected": {"manual": 1},
                "resolved": {},
                "resolutions": {},
            },
        },
    )
    assert outbox_lines(outbox) == [
        "Triage outbox: 2 pending, 1 in conflict (waiting for a person), 1 cancelled",
        "  oldest pending: change 7, waiting 3 min (since 2026-01-01T00:00:00Z)",
        "  conflicts: 2 detected (manual 2), 1 resolved (manual 1); keep_server 1",
        "  conflicts in the latest run (from 2026-01-01T00:00:00Z): 1 detected (manual 1), "
        "0 resolved",
    ]
