"""Time buckets of ``query_metrics`` (UTC): the key of a moment, and every bucket of a period,
so buckets without data are answered too. Keys are the ones the SQL of ``metrics_vocabulary``
computes: day ``YYYY-MM-DD``, week its Monday ``YYYY-MM-DD``, month ``YYYY-MM``, quarter
``YYYY-Qn``; their text order is time order."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

MAX_BUCKETS = 400
COARSER = {"day": "week", "week": "month", "month": "quarter", "quarter": "quarter"}


class MetricsQueryError(ValueError):
    """A metrics query that cannot be answered as asked; the message says what to change."""


def bucket_of(unit: str, moment: datetime) -> str:
    """The key of the bucket holding ``moment`` (taken in UTC; naive is UTC)."""
    if moment.tzinfo is not None:
        try:
            moment = moment.astimezone(UTC)
        except OverflowError:  # year 1 or 9999 pushed out of range by its offset
            moment = datetime.min if moment.year == 1 else datetime.max
    day = moment.date()
    if unit == "day":
        return day.isoformat()
    if unit == "week":
        return (day - timedelta(days=day.weekday())).isoformat()
    if unit == "month":
        return f"{day.year:04d}-{day.month:02d}"
    return f"{day.year:04d}-Q{(day.month + 2) // 3}"


def _index(unit: str, key: str) -> int:
    """A bucket's position on a line of buckets of its unit (consecutive buckets differ by 1)."""
    if unit in ("day", "week"):
        ordinal = date.fromisoformat(key).toordinal()
        return ordinal if unit == "day" else (ordinal - 1) // 7
    year = int(key[:4])
    if unit == "month":
        return year * 12 + int(key[5:7]) - 1
    return year * 4 + int(key[6]) - 1


def _key(unit: str, index: int) -> str:
    if unit == "day":
        return date.fromordinal(index).isoformat()
    if unit == "week":
        # Ordinal 1 (0001-01-01) is a Monday, so (ordinal - 1) // 7 counts weeks from there.
        return date.fromordinal(index * 7 + 1).isoformat()
    if unit == "month":
        return f"{index // 12:04d}-{index % 12 + 1:02d}"
    return f"{index // 4:04d}-Q{index % 4 + 1}"


def buckets_between(unit: str, first: str, last: str) -> list[str]:
    """Every bucket key from ``first`` to ``last`` (both included), in time order.

    Raises:
        MetricsQueryError: more than ``MAX_BUCKETS`` of them.
    """
    start, end = _index(unit, first), _index(unit, last)
    count = end - start + 1
    if count > MAX_BUCKETS:
        coarser = COARSER[unit]
        advice = f"or group by {coarser}" if coarser != unit else "(quarter is the coarsest)"
        raise MetricsQueryError(
            f"{count} {unit} buckets from {first} to {last}, more than {MAX_BUCKETS}: narrow "
            f"since/until {advice}"
        )
    return [_key(unit, i) for i in range(start, end + 1)]


def period_buckets(unit: str, since: datetime, until: datetime) -> list[str]:
    """The buckets of ``[since, until)``: from the one holding ``since`` to the one holding the
    last instant before ``until``; none when the period is empty.

    Raises:
        MetricsQueryError: more than ``MAX_BUCKETS`` of them.
    """
    if until <= since:
        return []
    last = until - timedelta(microseconds=1)
    return buckets_between(unit, bucket_of(unit, since), bucket_of(unit, last))
