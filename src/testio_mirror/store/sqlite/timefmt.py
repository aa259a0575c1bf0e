"""Times as the mirror stores them: fixed-width ISO 8601 UTC text, so text order is time order."""

from __future__ import annotations

from datetime import UTC, datetime

_FIRST = datetime.min.replace(tzinfo=UTC)
_LAST = datetime.max.replace(tzinfo=UTC)


def to_db(moment: datetime | None) -> str | None:
    """``2026-11-21T05:30:00.000000Z`` for an aware datetime (naive ones are taken as UTC).

    Always four-digit years (strftime writes year 999 as "999", which sorts after "2026"); a
    moment whose UTC time falls outside datetime's range (year 1 at +14:00, year 9999 at
    -14:00) is stored as the first or last one there is, which orders the same against every
    stored time.
    """
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        utc = _FIRST if moment.year == 1 else _LAST
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def from_db(text: str | None) -> datetime | None:
    """The aware UTC datetime of a stored time."""
    if text is None:
        return None
    # fromisoformat reads "...Z" since Python 3.11, and is far quicker than strptime.
    return datetime.fromisoformat(text)


def required_from_db(text: str) -> datetime:
    """A stored time from a NOT NULL column."""
    moment = from_db(text)
    assert moment is not None
    return moment


def utc_now() -> datetime:
    return datetime.now(UTC)
