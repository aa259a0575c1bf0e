"""Test-case tests: the cases of a test whose ``testing_type`` is null, and their executions.

Everything is drawn from the dataset's seed and the test's id (the executions also from the
test's status and dates, as they are now): the same test always has the same cases, and
asking twice answers the same. Tests not yet running (``initialized``, ``waiting``) have no
executions.

Which shape a product answers in is fixed per product, as a deployment's is: the cases wrapped
in ``test_case_test`` on odd product ids, bare on even ones; the results a bare array, but
wrapped in ``test_case_results`` on product ids divisible by three.

Example::

    cases = generate_test_cases(seed=1, test_id=100_009)   # [{"id", "title", "steps": [...]}]
    runs = generate_executions(seed=1, test=test)           # [{"test_case_id", "status", ...}]
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from testio_mirror.sandbox.dataset import TEST_ID_BASE, TESTERS, parse_iso, random_iso

JSON = dict[str, Any]

# Ten cases at most per test, ten steps at most per case: ids are arithmetic and never collide.
TEST_CASE_ID_BASE = 30_000_000
NOT_STARTED = frozenset({"initialized", "waiting"})
EXECUTION_STATUSES = ("passed", "failed", "blocked", "skipped")
_STATUS_WEIGHTS = (76, 14, 7, 3)

_JOURNEYS = (
    ("Sign in", ("Open the login page", "Enter a valid email", "Enter the password", "Submit")),
    ("Search a product", ("Open the search", "Type a product name", "Open the first result")),
    ("Checkout as a guest", ("Add an item to the cart", "Open the cart", "Pay by card")),
    ("Change the language", ("Open the settings", "Pick Deutsch", "Go back to the home page")),
    ("Reset the password", ("Open the login page", "Tap 'Forgot password'", "Open the email")),
    ("Add to the wishlist", ("Open a product", "Tap the heart", "Open the wishlist")),
    ("Réserver un créneau", ("Ouvrir l'agenda", "Choisir un jour", "Confirmer")),
)
_EXTRA_STEPS = ("Check the confirmation message", "Reload the page", "Sign out")
_FAILURES = {
    "failed": ("The button does nothing.", "An error page shows.", "The total is wrong."),
    "blocked": ("The staging server is down.", "The test account is locked."),
    "skipped": ("Not applicable on this device.",),
}


def wraps_test_case_test(product_id: int) -> bool:
    """Whether the product answers ``{"test_case_test": {...}}`` (else the object alone)."""
    return product_id % 2 == 1


def wraps_results(product_id: int) -> bool:
    """Whether the product answers ``{"test_case_results": [...]}`` (else a bare array)."""
    return product_id % 3 == 0


def generate_test_cases(seed: int, test_id: int) -> list[JSON]:
    """The test's cases, two to four, each with two to five steps."""
    rng = random.Random(f"{seed}:test-cases:{test_id}")
    first_case = TEST_CASE_ID_BASE + (test_id - TEST_ID_BASE) * 10
    cases: list[JSON] = []
    for number, (title, steps) in enumerate(rng.sample(_JOURNEYS, rng.randint(2, 4))):
        case_id = first_case + number
        texts = list(steps) + rng.sample(_EXTRA_STEPS, rng.randint(0, 5 - len(steps)))
        cases.append(
            {
                "id": case_id,
                "title": title,
                "steps": [
                    {"id": case_id * 10 + index, "description": text}
                    for index, text in enumerate(texts)
                ],
            }
        )
    return cases


def generate_executions(seed: int, test: JSON) -> list[JSON]:
    """Every execution of the test's cases, oldest first: two to four per case, by different
    testers, mostly passed; a failed (blocked, skipped) one names the step it stopped at."""
    if test["status"] in NOT_STARTED:
        return []
    rng = random.Random(f"{seed}:test-case-results:{test['id']}")
    start, end = parse_iso(test["start_at"]), parse_iso(test["end_at"])
    span = max((end - start).total_seconds(), 1.0)
    executions: list[tuple[float, JSON]] = []
    for case in generate_test_cases(seed, test["id"]):
        for tester in rng.sample(TESTERS, rng.randint(2, 4)):
            status = rng.choices(EXECUTION_STATUSES, _STATUS_WEIGHTS)[0]
            at = rng.uniform(0, span)
            execution = {
                "test_case_id": case["id"],
                "status": status,
                "tester": {"name": tester},
                "steps": _step_results(rng, case["steps"], status),
                "executed_at": random_iso(rng, start + timedelta(seconds=at)),  # passes through
            }
            executions.append((at, execution))
    executions.sort(key=lambda pair: pair[0])
    return [execution for _, execution in executions]


def _step_results(rng: random.Random, steps: list[JSON], status: str) -> list[JSON]:
    # A passed run passed every step; another stopped at one step, and skipped the rest.
    stop = len(steps) if status == "passed" else rng.randrange(len(steps))
    results: list[JSON] = []
    for index, step in enumerate(steps):
        result: JSON = {"id": step["id"]}
        if index < stop:
            result["status"] = "passed"
            if rng.random() < 0.1:
                result["comment"] = "Works, but slowly."
        elif index == stop:
            result["status"] = status
            result["comment"] = rng.choice(_FAILURES[status])
        else:
            result["status"] = "skipped"
        results.append(result)
    return results


def test_case_truth(seed: int, test: JSON) -> JSON:
    """What a mirror of the test-case test must hold (``world.snapshot()["test_case_tests"]``)."""
    return {
        "product_id": test["product"]["id"],
        "test_cases": generate_test_cases(seed, test["id"]),
        "results": generate_executions(seed, test),
    }
