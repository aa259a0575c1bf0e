"""The parts of a sandbox bug that issue 19's metrics read: the platform it was found on
(``devices``) and the custom report some products configure (``report``).

Both come from a generator of their own (``details_rng``: the dataset's seed and the test or bug),
not from the one the rest of a bug is drawn from, so adding them left every other field of every
bug as it was. The
platform family is still the one draw ``make_bug`` always made (one of four), refined here.

Example::

    rng = details_rng(seed=1, owner="test-100001")
    devices = bug_devices(rng, family=2)        # [{"category": {"name": "Desktop"}, ...}]
    report = report_of(rng, product_id=101, product_index=0)  # None: no report form
"""

from __future__ import annotations

import random
from typing import Any

JSON = dict[str, Any]

# The four families the old one-line device names stood for, in their old order.
PLATFORM_FAMILIES = 4
CUSTOM_REPORT_CONFIGURATION_ID_BASE = 8_000

# (name, operating-system id): one id per system, whatever its version.
_SYSTEMS = {
    "Windows": 11,
    "macOS": 12,
    "Linux": 13,
    "Android": 21,
    "iOS": 22,
    "iPadOS": 23,
}
# (vendor, device) choices, versions, browsers (None: found in an app, no browser)
_Models = tuple[tuple[tuple[str, str], ...], tuple[str, ...], tuple[str | None, ...]]
# category -> system -> its models
_CATALOGUE: dict[str, dict[str, _Models]] = {
    "Desktop": {
        "Windows": (
            (("Dell", "XPS 13"), ("Lenovo", "ThinkPad X1 Carbon"), ("HP", "EliteBook 840")),
            ("10", "11"),
            ("Chrome", "Firefox", "Edge"),
        ),
        "macOS": (
            (("Apple", "MacBook Pro 14"), ("Apple", "MacBook Air M2"), ("Apple", "iMac 24")),
            ("14", "15"),
            ("Safari", "Chrome", "Firefox"),
        ),
        "Linux": (
            (("Lenovo", "ThinkPad T14"), ("Framework", "Laptop 13")),
            ("Ubuntu 24.04", "Fedora 40"),
            ("Chrome", "Firefox"),
        ),
    },
    "Smartphone": {
        "Android": (
            (("Google", "Pixel 8"), ("Samsung", "Galaxy S24"), ("OnePlus", "OnePlus 12")),
            ("14", "15"),
            ("Chrome", "Samsung Internet", None),
        ),
        "iOS": (
            (("Apple", "iPhone 15"), ("Apple", "iPhone 13 mini")),
            ("17", "18"),
            ("Safari", "Chrome", None),
        ),
    },
    "Tablet": {
        "Android": (
            (("Samsung", "Galaxy Tab S9"), ("Lenovo", "Tab P12")),
            ("14",),
            ("Chrome", None),
        ),
        "iPadOS": (
            (("Apple", "iPad Air"), ("Apple", "iPad Pro 11")),
            ("17", "18"),
            ("Safari", None),
        ),
    },
}
# family (the old draw: iPhone, Pixel, Windows, macOS) -> (category, system, weight) choices
_FAMILIES: tuple[tuple[tuple[str, str, int], ...], ...] = (
    (("Smartphone", "iOS", 65), ("Tablet", "iPadOS", 35)),
    (("Smartphone", "Android", 70), ("Tablet", "Android", 30)),
    (("Desktop", "Windows", 70), ("Desktop", "Linux", 30)),
    (("Desktop", "macOS", 100),),
)
_IMPACTS = ("high", "medium", "low")
_IMPACT_WEIGHTS = (20, 45, 35)
_RELEASES = ("2.3", "2.4", "2.5")


def details_rng(seed: int, owner: str) -> random.Random:
    """The generator of devices and reports for ``owner``: a test's generated bugs share one
    (``"test-<id>"``: they are always generated together, in order), a bug born later has its
    own (``"bug-<id>"``). One per bug cost more than the rest of the bug."""
    return random.Random(f"{seed}:bug-details:{owner}")


def bug_devices(rng: random.Random, family: int) -> list[JSON]:
    """Where the bug was found: one device, sometimes a second of another family."""
    devices = [_device(rng, family)]
    if rng.random() < 0.12:
        other = (family + rng.randint(1, PLATFORM_FAMILIES - 1)) % PLATFORM_FAMILIES
        devices.append(_device(rng, other))
    return devices


def _device(rng: random.Random, family: int) -> JSON:
    choices = _FAMILIES[family]
    category, system, _ = rng.choices(choices, [weight for *_, weight in choices])[0]
    models, versions, browsers = _CATALOGUE[category][system]
    vendor, model = rng.choice(models)
    browser = rng.choice(browsers)
    # Desktop bugs name one browser, now and then two (reproduced in another).
    names = [browser] if browser is not None else []
    if category == "Desktop" and rng.random() < 0.15:
        names += [rng.choice([b for b in browsers if b is not None and b != browser])]
    return {
        "category": {"name": category},
        "vendor": {"name": vendor},
        "devices": {"name": model},
        "operating_system": {
            "id": _SYSTEMS[system],
            "name": system,
            "version": rng.choice(versions),  # an extra field: passes through
        },
        "browsers": [{"name": name} for name in names],
    }


def has_custom_reports(product_index: int) -> bool:
    """Every third product (the first included) configures a custom report form."""
    return product_index % 3 == 0


def report_of(rng: random.Random, product_id: int, product_index: int) -> JSON | None:
    """A bug's custom report, or None when its product (the ``product_index``-th generated,
    from 0) has no report form; one form per product."""
    if not has_custom_reports(product_index):
        return None
    return custom_report(rng, CUSTOM_REPORT_CONFIGURATION_ID_BASE + product_id)


def custom_report(rng: random.Random, configuration_id: int) -> JSON:
    """One filled-in custom report: every value a string, as the API sends them."""
    steps = rng.choices(range(1, 9), (10, 25, 25, 15, 10, 8, 4, 3))[0]
    affected = "" if rng.random() < 0.08 else str(rng.choice((0, 5, 20, 120, 800, 5000)))
    data = [
        {"key": "steps_to_reproduce_count", "value": str(steps)},
        {"key": "build_number", "value": str(rng.randint(1000, 1099))},
        {"key": "affected_users", "value": affected},  # "": the tester left it blank
        {"key": "customer_impact", "value": rng.choices(_IMPACTS, _IMPACT_WEIGHTS)[0]},
        {"key": "found_in_release", "value": rng.choice(_RELEASES)},
    ]
    return {"custom_report_configuration_id": configuration_id, "content": {"data": data}}
