"""Stored times: fixed-width UTC text whose text order is time order, for any datetime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from testio_mirror.store.sqlite.timefmt import from_db, to_db

PLUS_14 = timezone(timedelta(hours=14))
MINUS_14 = timezone(timedelta(hours=-14))


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 11, 21, 5, 30, tzinfo=UTC), "2026-11-21T05:30:00.000000Z"),
        (
            datetime(2026, 11, 21, 7, 30, tzinfo=timezone(timedelta(hours=2))),
            "2026-11-21T05:30:00.000000Z",
        ),
        (datetime(2026, 11, 21, 5, 30), "2026-11-21T05:30:00.000000Z"),  # naive: taken as UTC
        (datetime(999, 12, 31, 23, 59, 59, tzinfo=UTC), "0999-12-31T23:59:59.000000Z"),
        (datetime(1, 1, 1, tzinfo=PLUS_14), "0001-01-01T00:00:00.000000Z"),  # before year 1 UTC
        (datetime(9999, 12, 31, 23, 0, tzinfo=MINUS_14), "9999-12-31T23:59:59.999999Z"),
    ],
)
def test_to_db_writes_fixed_width_utc(moment: datetime, text: str) -> None:
    assert to_db(moment) == text


def test_text_order_is_time_order_across_the_calendar() -> None:
    moments = [datetime(year, 6, 1, tzinfo=UTC) for year in (1, 9, 99, 999, 1000, 2026, 9999)]
    texts = [to_db(m) for m in moments]
    assert texts == sorted(t for t in texts if t is not None)
    assert [from_db(t) for t in texts] == moments
