"""What issue 19's metrics read from sandbox bugs: the platforms in ``devices``, custom reports,
auto-acceptance over time and the testers, all fixed by the dataset's seed."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import pytest

from testio_mirror.sandbox import DatasetSpec, SandboxWorld
from testio_mirror.sandbox.dataset import parse_iso, preset
from tests.conftest import SMALL

JSON = dict[str, Any]

SPEC = DatasetSpec(seed=11, products=4, section_products=2, tests_per_product=60, bugs_per_test=6)
NUMERIC_REPORT_KEYS = {"steps_to_reproduce_count", "build_number", "affected_users"}
CATEGORICAL_REPORT_VALUES = {
    "customer_impact": {"high", "medium", "low"},
    "found_in_release": {"2.3", "2.4", "2.5"},
}


@pytest.fixture(scope="module")
def bugs() -> list[JSON]:
    return list(SandboxWorld(SPEC).snapshot()["bugs"].values())


def test_devices_have_the_documented_shape(bugs: list[JSON]) -> None:
    for bug in bugs:
        assert isinstance(bug["devices"], list)
        assert bug["devices"], bug["id"]
        for device in bug["devices"]:
            assert isinstance(device["category"]["name"], str)
            assert isinstance(device["vendor"]["name"], str)
            assert isinstance(device["devices"]["name"], str)
            assert isinstance(device["operating_system"]["id"], int)
            assert isinstance(device["operating_system"]["name"], str)
            assert isinstance(device["browsers"], list)
            for browser in device["browsers"]:
                assert isinstance(browser["name"], str)


def test_platforms_are_spread_so_platform_metrics_mean_something(bugs: list[JSON]) -> None:
    devices = [device for bug in bugs for device in bug["devices"]]
    categories = Counter(d["category"]["name"] for d in devices)
    assert set(categories) == {"Desktop", "Smartphone", "Tablet"}
    # No platform takes nearly everything: rates per platform differ only if each has bugs.
    assert max(categories.values()) < 0.7 * len(devices)
    systems = {d["operating_system"]["name"] for d in devices}
    assert {"Windows", "macOS", "Linux", "Android", "iOS", "iPadOS"} <= systems
    desktop_browsers = {
        b["name"] for d in devices if d["category"]["name"] == "Desktop" for b in d["browsers"]
    }
    assert {"Chrome", "Firefox", "Safari", "Edge"} <= desktop_browsers
    assert all(d["browsers"] for d in devices if d["category"]["name"] == "Desktop")
    # Apps: a smartphone or tablet bug found in an app names no browser.
    assert any(not d["browsers"] for d in devices if d["category"]["name"] != "Desktop")
    assert any(len(bug["devices"]) == 2 for bug in bugs)


def test_an_operating_system_id_names_one_system(bugs: list[JSON]) -> None:
    names_by_id: dict[int, set[str]] = defaultdict(set)
    for bug in bugs:
        for device in bug["devices"]:
            names_by_id[device["operating_system"]["id"]].add(device["operating_system"]["name"])
    assert len(names_by_id) >= 6
    assert all(len(names) == 1 for names in names_by_id.values())


def test_devices_and_reports_follow_the_seed() -> None:
    first = SandboxWorld(SMALL).snapshot()["bugs"]
    again = SandboxWorld(SMALL).snapshot()["bugs"]
    other = SandboxWorld(DatasetSpec(seed=4, products=3, tests_per_product=30, bugs_per_test=3))
    assert [b["devices"] for b in first.values()] == [b["devices"] for b in again.values()]
    assert [b.get("report") for b in first.values()] == [b.get("report") for b in again.values()]
    others = other.snapshot()["bugs"]
    assert [b["devices"] for b in first.values()] != [b["devices"] for b in others.values()]


@pytest.mark.parametrize("spec", [SPEC, SMALL, preset("demo")], ids=["spec", "small", "demo"])
def test_every_third_product_has_custom_reports_and_only_those(spec: DatasetSpec) -> None:
    world = SandboxWorld(spec)
    snapshot = world.snapshot()
    with_reports = {b["product"]["id"] for b in snapshot["bugs"].values() if "report" in b}
    products = sorted(snapshot["products"])
    assert with_reports == set(products[::3])
    for bug in snapshot["bugs"].values():
        assert ("report" in bug) == (bug["product"]["id"] in with_reports)


def test_custom_reports_hold_numeric_and_categorical_strings(bugs: list[JSON]) -> None:
    reports = [bug["report"] for bug in bugs if "report" in bug]
    assert reports
    seen: dict[str, set[str]] = defaultdict(set)
    for report in reports:
        assert isinstance(report["custom_report_configuration_id"], int)
        for entry in report["content"]["data"]:
            assert isinstance(entry["value"], str)
            seen[entry["key"]].add(entry["value"])
    assert set(seen) == NUMERIC_REPORT_KEYS | set(CATEGORICAL_REPORT_VALUES)
    for key in NUMERIC_REPORT_KEYS:
        numbers = [int(value) for value in seen[key] if value != ""]
        assert len(set(numbers)) > 3, key
    # A form left blank: the one non-numeric value a numeric field takes.
    assert "" in seen["affected_users"]
    for key, values in CATEGORICAL_REPORT_VALUES.items():
        assert seen[key] == values


def test_a_product_has_one_report_configuration(bugs: list[JSON]) -> None:
    configurations: dict[int, set[int]] = defaultdict(set)
    for bug in bugs:
        if "report" in bug:
            configuration = bug["report"]["custom_report_configuration_id"]
            configurations[bug["product"]["id"]].add(configuration)
    assert all(len(ids) == 1 for ids in configurations.values())
    assert len({next(iter(ids)) for ids in configurations.values()}) == len(configurations)


def test_auto_accepted_bugs_are_a_share_of_acceptances_in_every_month(bugs: list[JSON]) -> None:
    accepted = [bug for bug in bugs if bug["status"] == "accepted"]
    auto = [bug for bug in accepted if bug["auto_accepted"]]
    assert 0.15 < len(auto) / len(accepted) < 0.5
    assert not any(bug["auto_accepted"] for bug in bugs if bug["status"] != "accepted")
    by_month: dict[str, Counter[bool]] = defaultdict(Counter)
    for bug in accepted:
        by_month[parse_iso(bug["reported_at"]).strftime("%Y-%m")][bug["auto_accepted"]] += 1
    both = [month for month, kinds in by_month.items() if kinds[True] and kinds[False]]
    assert len(both) >= 3, dict(by_month)


def test_each_tester_name_is_one_tester(bugs: list[JSON]) -> None:
    names = {bug["author"]["name"] for bug in bugs}
    assert len(names) >= 5
    assert all(name == name.strip() for name in names)
    assert len({name.casefold() for name in names}) == len(names)
    assert "tester_eli" in names


def test_the_rest_of_the_small_set_did_not_move() -> None:
    """Figures of the small set measured before devices and reports were added: other tests
    compare mirrors with these bugs, so the new fields must not shift the old ones."""
    world = SandboxWorld(SMALL)
    bugs = list(world.snapshot()["bugs"].values())
    assert Counter(b["status"] for b in bugs) == {"accepted": 157, "forwarded": 46, "rejected": 67}
    assert sum(b["auto_accepted"] for b in bugs) == 47
    assert Counter(b["author"]["name"] for b in bugs)["tester_fátima"] == 52
    bug = world.bug(1_000_040)
    assert (bug["title"], bug["status"], bug["reported_at"]) == (
        "Payments 5 freezes",
        "rejected",
        "2026-09-14T02:08:22+01:00",
    )
