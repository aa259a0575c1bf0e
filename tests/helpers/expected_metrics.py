"""What query_metrics should answer, worked out again in plain Python from the sandbox's
snapshot (no SQL, no store code): the groups of every metric for some dimensions and filters,
empty time buckets included, and the previous period's for compare.

Filters are the tool's arguments (``product_ids``, ``since``, ...); keys are the answer's
strings (ids as text, ``known`` as "true"/"false", time buckets as the answer writes them).

Example::

    want = expected(mirrored, ["bug_count"], ("product", "month"), {"since": "2026-10-01"})
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from mcp import Client

from tests.helpers.expected_answers import parse_time
from tests.helpers.mcp_session import JSON, Mirrored, call

ALL_METRICS = (
    "test_count", "bug_count", "bugs_per_test", "accepted", "rejected", "forwarded",
    "auto_accepted", "acceptance_rate", "active_acceptance_rate", "auto_acceptance_rate",
    "rejection_rate", "review_rate", "severity_score", "critical_count", "active_testers",
    "features_tested", "tests_created", "tests_submitted",
)  # fmt: skip
TEST_METRICS = {
    "test_count",
    "bugs_per_test",
    "features_tested",
    "tests_created",
    "tests_submitted",
}
BUG_ONLY_DIMENSIONS = {"tester", "severity", "status", "rejection_reason", "known"}
# Platform dimensions and the key of a device row each reads (bugs only, several per bug).
PLATFORM = {"platform": "os", "browser": "browser", "device_category": "category"}
FIELD_KINDS = ("count", "sum", "mean", "min", "max")
TIME = ("day", "week", "month", "quarter")
WEIGHT = {"critical": 10, "high": 5, "custom": 2, "low": 1, "visual": 1, "content": 1}


def bucket(unit: str, moment: datetime) -> str:
    day = moment.astimezone(UTC).date()
    if unit == "day":
        return day.isoformat()
    if unit == "week":
        return (day - timedelta(days=day.weekday())).isoformat()
    if unit == "month":
        return day.strftime("%Y-%m")
    return f"{day.year}-Q{(day.month - 1) // 3 + 1}"


def days_between(first: datetime, last: datetime) -> Iterator[datetime]:
    moment = datetime(first.year, first.month, first.day, tzinfo=UTC)
    while moment <= last:
        yield moment
        moment += timedelta(days=1)


def facts(mirrored: Mirrored) -> tuple[list[JSON], list[JSON]]:
    """Every bug and every test of the snapshot, as the dimensions see them."""
    truth = mirrored.truth
    reasons = {r["default_comment"]: r["key"] for r in mirrored.sandbox.world.reject_reasons()}
    tests = []
    for test in truth["tests"].values():
        tests.append(
            {
                "product": str(test["product"]["id"]),
                "features": sorted({str(f["feature_id"]) for f in test["features"]}),
                "test": str(test["id"]),
                "testing_type": test["testing_type"],
                "test_environment": (test.get("test_environment") or {}).get("title"),
                "at": parse_time(test["end_at"]),
                "created": test["created_by"] is not None,
                "submitted": test["submitted_by"] is not None,
            }
        )
    by_id = {t["test"]: t for t in tests}
    bugs = []
    for bug in truth["bugs"].values():
        test = by_id[str(bug["test"]["id"])]
        reason = None
        if bug["status"] == "rejected":
            for comment in bug["comments"]:
                reason = reasons.get(comment["body"], reason)
        bugs.append(
            {
                "product": str(bug["product"]["id"]),
                "feature": str(bug["feature"]["id"]) if bug["feature"] else None,
                "test": test["test"],
                "tester": bug["author"]["name"],
                "severity": bug["severity"],
                "status": bug["status"],
                "testing_type": test["testing_type"],
                "test_environment": test["test_environment"],
                "rejection_reason": reason,
                "known": "true" if bug["known"] else "false",
                "auto": bug["auto_accepted"],
                "at": parse_time(bug["reported_at"]),
                "devices": device_rows(bug),
                "fields": report_fields(bug),
            }
        )
    return bugs, tests


def device_rows(bug: JSON) -> list[JSON]:
    """One row per device and browser the bug names (a device without a browser: None)."""
    rows = []
    for device in bug.get("devices") or []:
        for browser in [b["name"] for b in device["browsers"]] or [None]:
            rows.append(
                {
                    "os": device["operating_system"]["name"],
                    "browser": browser,
                    "category": device["category"]["name"],
                }
            )
    return rows


def report_fields(bug: JSON) -> dict[str, str]:
    report = bug.get("report") or {}
    return {entry["key"]: entry["value"] for entry in report.get("content", {}).get("data", [])}


def field_number(text: str | None) -> float | None:
    """A custom field's number: the sandbox sends whole numbers, blanks and words."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def keep_bug(bug: JSON, tests: dict[str, JSON], f: JSON) -> bool:
    test = tests[bug["test"]]
    return all(
        (
            not f.get("product_ids") or bug["product"] in map(str, f["product_ids"]),
            not f.get("feature_ids") or bug["feature"] in map(str, f["feature_ids"]),
            not f.get("test_ids") or bug["test"] in map(str, f["test_ids"]),
            not f.get("testing_type") or test["testing_type"] in f["testing_type"],
            not f.get("severity") or bug["severity"] in f["severity"],
            not f.get("status") or bug["status"] in f["status"],
            not f.get("tester") or bug["tester"] == f["tester"],
            f.get("known") is None or bug["known"] == ("true" if f["known"] else "false"),
            "since" not in f or bug["at"] >= parse_time(f["since"]),
            "until" not in f or bug["at"] < parse_time(f["until"]),
        )
    )


def keep_test(test: JSON, f: JSON) -> bool:
    chosen = set(map(str, f.get("feature_ids") or ()))
    return all(
        (
            not f.get("product_ids") or test["product"] in map(str, f["product_ids"]),
            not chosen or chosen & set(test["features"]),
            not f.get("test_ids") or test["test"] in map(str, f["test_ids"]),
            not f.get("testing_type") or test["testing_type"] in f["testing_type"],
            "since" not in f or test["at"] >= parse_time(f["since"]),
            "until" not in f or test["at"] < parse_time(f["until"]),
        )
    )


def rate(top: int, bottom: int) -> float | None:
    return round(top / bottom, 4) if bottom else None


def values(bugs: list[JSON], tests: list[JSON], f: JSON, metrics: Sequence[str]) -> JSON:
    accepted = sum(b["status"] == "accepted" for b in bugs)
    rejected = sum(b["status"] == "rejected" for b in bugs)
    auto = sum(b["status"] == "accepted" and bool(b["auto"]) for b in bugs)
    chosen = set(map(str, f.get("feature_ids") or ()))
    features = {b["feature"] for b in bugs if b["feature"]} | {
        feature for t in tests for feature in t["features"] if not chosen or feature in chosen
    }
    every = {
        "test_count": len(tests),
        "bug_count": len(bugs),
        "bugs_per_test": rate(len(bugs), len(tests)),
        "accepted": accepted,
        "rejected": rejected,
        "forwarded": sum(b["status"] == "forwarded" for b in bugs),
        "auto_accepted": auto,
        "acceptance_rate": rate(accepted, accepted + rejected),
        "active_acceptance_rate": rate(accepted - auto, accepted + rejected),
        "auto_acceptance_rate": rate(auto, accepted),
        "rejection_rate": rate(rejected, accepted + rejected),
        "review_rate": rate(accepted + rejected, len(bugs)),
        "severity_score": sum(WEIGHT.get(b["severity"], 0) for b in bugs),
        "critical_count": sum(b["severity"] == "critical" for b in bugs),
        "active_testers": len({b["tester"] for b in bugs}),
        "features_tested": len(features),
        "tests_created": sum(t["created"] for t in tests),
        "tests_submitted": sum(t["submitted"] for t in tests),
    }
    for name in metrics:
        if name.startswith("field_"):
            kind, key = name.removeprefix("field_").split(":")
            numbers = [n for b in bugs if (n := field_number(b["fields"].get(key))) is not None]
            every[name] = {
                "count": len(numbers),
                "sum": round(sum(numbers), 4) if numbers else None,
                "mean": round(sum(numbers) / len(numbers), 4) if numbers else None,
                "min": min(numbers, default=None),
                "max": max(numbers, default=None),
            }[kind]
    return {name: every[name] for name in metrics}


def keys_of(
    item: JSON, dimensions: Sequence[str], f: JSON, *, is_test: bool
) -> list[tuple[Any, ...]]:
    """The groups one bug or test falls in (a test: one per feature it covers; a bug: one per
    distinct platform value, or pair of values of one device row)."""
    platform = [name for name in dimensions if name in PLATFORM]
    if not is_test and len(platform) == 2:
        first, second = (PLATFORM[name] for name in platform)
        pairs = {(row[first], row[second]) for row in item["devices"]}
        return sorted(pairs or {(None, None)}, key=repr)
    options: list[list[Any]] = []
    for name in dimensions:
        if name in PLATFORM:
            found = {row[PLATFORM[name]] for row in item["devices"]}
            options.append(sorted(found or {None}, key=repr))
        elif name.startswith("custom_field:"):
            options.append([item["fields"].get(name.split(":", 1)[1]) or None])
        elif name in TIME:
            options.append([bucket(name, item["at"])])
        elif name == "feature" and is_test:
            chosen = set(map(str, f.get("feature_ids") or ()))
            covered = [x for x in item["features"] if not chosen or x in chosen]
            options.append(covered or [None])
        else:
            options.append([item[name]])
    keys: list[tuple[Any, ...]] = [()]
    for choice in options:
        keys = [(*key, value) for key in keys for value in choice]
    return keys


def expected(
    mirrored: Mirrored, metrics: Sequence[str], dimensions: Sequence[str], f: JSON
) -> dict[tuple[Any, ...], JSON]:
    """Every group the answer must hold and its values, empty time buckets included."""
    all_bugs, all_tests = facts(mirrored)
    by_id = {t["test"]: t for t in all_tests}
    bugs = [b for b in all_bugs if keep_bug(b, by_id, f)]
    tests = [t for t in all_tests if keep_test(t, f)]
    grouped_bugs: dict[tuple[Any, ...], list[JSON]] = {}
    grouped_tests: dict[tuple[Any, ...], list[JSON]] = {}
    counts_tests = bool(TEST_METRICS & set(metrics))
    counts_bugs = (
        bool(set(metrics) - TEST_METRICS)
        or "bugs_per_test" in metrics
        or ("features_tested" in metrics)
    )
    if counts_bugs:
        for b in bugs:
            for key in keys_of(b, dimensions, f, is_test=False):
                grouped_bugs.setdefault(key, []).append(b)
    if counts_tests:
        for t in tests:
            for key in keys_of(t, dimensions, f, is_test=True):
                grouped_tests.setdefault(key, []).append(t)
    groups = set(grouped_bugs) | set(grouped_tests)
    time_at = next((i for i, d in enumerate(dimensions) if d in TIME), None)
    if time_at is not None:
        unit = dimensions[time_at]
        # The period's bounds where given, else the data's first and last moments.
        moments = [b["at"] for b in bugs if counts_bugs] + [t["at"] for t in tests if counts_tests]
        first = parse_time(f["since"]) if "since" in f else min(moments, default=None)
        last = max(moments, default=None)
        if "until" in f:
            last = parse_time(f["until"]) - timedelta(microseconds=1)
        line = []
        if first is not None and last is not None:
            line = list(dict.fromkeys(bucket(unit, d) for d in days_between(first, last)))
        others = {key[1 - time_at] for key in groups} if len(dimensions) == 2 else {None}
        for b_key in line:
            for other in others:
                key = (
                    (b_key,)
                    if len(dimensions) == 1
                    else ((b_key, other) if time_at == 0 else (other, b_key))
                )
                groups.add(key)
    if not dimensions:
        groups = {()}
    return {
        key: values(grouped_bugs.get(key, []), grouped_tests.get(key, []), f, metrics)
        for key in groups
    }


def shift_previous(
    mirrored: Mirrored, metrics: list[str], dimensions: Sequence[str], since: str, until: str
) -> dict[tuple[Any, ...], JSON]:
    start, end = parse_time(since), parse_time(until)
    before = (start - (end - start)).isoformat()
    prior = expected(mirrored, metrics, dimensions, {"since": before, "until": since})
    time_at = next((i for i, d in enumerate(dimensions) if d in TIME), None)
    if time_at is None:
        return prior
    unit = dimensions[time_at]
    line = lambda a, b: list(  # noqa: E731
        dict.fromkeys(bucket(unit, d) for d in days_between(a, b - timedelta(microseconds=1)))
    )
    now, old = line(start, end), line(parse_time(before), start)
    offset = len(old) - len(now)
    moved = {o: now[i - offset] for i, o in enumerate(old) if 0 <= i - offset < len(now)}
    shifted = {}
    for key, got in prior.items():
        if key[time_at] in moved:
            new = list(key)
            new[time_at] = moved[key[time_at]]
            shifted[tuple(new)] = got
    return shifted


async def every_row(client: Client, args: JSON) -> tuple[list[JSON], JSON]:
    """Every row of a query, following next_cursor; and the first answer."""
    first = answer = await call(client, "query_metrics", {**args, "limit": 100})
    rows = list(answer["rows"])
    while answer["next_cursor"] is not None:
        answer = await call(
            client, "query_metrics", {**args, "limit": 100, "cursor": answer["next_cursor"]}
        )
        rows.extend(answer["rows"])
    assert len(rows) == first["row_count"]
    return rows, first


def as_table(rows: list[JSON], dimensions: Sequence[str]) -> dict[tuple[Any, ...], JSON]:
    table = {tuple(row["group"][d] for d in dimensions): row["values"] for row in rows}
    assert len(table) == len(rows), "a group answered twice"
    return table


def metrics_for(dimensions: Sequence[str]) -> list[str]:
    bug_only = any(d in PLATFORM or d.startswith("custom_field:") for d in dimensions)
    if bug_only or BUG_ONLY_DIMENSIONS & set(dimensions):
        return [m for m in ALL_METRICS if m not in TEST_METRICS]
    return list(ALL_METRICS)
