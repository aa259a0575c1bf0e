"""The sandbox's generated account: deterministic, and as varied as the API notes say it can be."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from testio_mirror.sandbox import DatasetSpec, SandboxWorld
from testio_mirror.sandbox.dataset import (
    REJECT_REASONS,
    SEVERITIES,
    TEST_STATUSES,
    build_account,
    generate_bugs,
    owner_of_generated_bug,
    product_has_sections,
)

Truth = dict[str, Any]

SPEC = DatasetSpec(seed=11, products=4, section_products=2, tests_per_product=60, bugs_per_test=6)


@pytest.fixture(scope="module")
def truth() -> Truth:
    return SandboxWorld(SPEC).snapshot()


def test_same_seed_same_account_other_seed_other_account() -> None:
    first = SandboxWorld(SPEC).snapshot()
    assert SandboxWorld(SPEC).snapshot() == first
    other = SandboxWorld(DatasetSpec(seed=12, products=4, section_products=2, tests_per_product=60))
    assert other.snapshot()["tests"] != first["tests"]


def test_sizes_follow_the_spec(truth: Truth) -> None:
    assert len(truth["products"]) == SPEC.products
    assert len(truth["tests"]) == SPEC.products * SPEC.tests_per_product
    assert len(truth["bugs"]) == SPEC.products * SPEC.tests_per_product * SPEC.bugs_per_test
    for features in truth["features"].values():
        assert len(features) == SPEC.features_per_product


def test_section_products_follow_the_api_rule() -> None:
    account = build_account(SPEC)
    with_sections = [p for p in account.products if product_has_sections(p)]
    assert len(with_sections) == SPEC.section_products
    for product in account.products:
        ids = [s["id"] for s in product["sections_with_default"]]
        assert ids[0] == product["default_section_id"]
        assert len(ids) == 1 + len(product["sections"])


def test_every_test_status_and_testing_type_appears(
    truth: Truth,
) -> None:
    tests = list(truth["tests"].values())
    assert {t["status"] for t in tests} == set(TEST_STATUSES)
    types = {t["testing_type"] for t in tests}
    assert None in types
    assert {"coverage", "focused", "rapid", "usability", "external"} <= types


def test_bugs_have_every_severity_and_status_and_flag(
    truth: Truth,
) -> None:
    bugs = list(truth["bugs"].values())
    assert {b["severity"] for b in bugs} == set(SEVERITIES)
    assert {b["status"] for b in bugs} == {"accepted", "rejected", "forwarded"}
    assert any(b["auto_accepted"] for b in bugs)
    assert any(b["known"] for b in bugs)
    assert any(isinstance(b["steps"], str) for b in bugs)
    assert any(isinstance(b["steps"], list) for b in bugs)


def test_rejected_bugs_carry_a_reject_reason_in_their_comments(
    truth: Truth,
) -> None:
    comments = {r["default_comment"] for r in REJECT_REASONS}
    rejected = [b for b in truth["bugs"].values() if b["status"] == "rejected"]
    assert rejected
    for bug in rejected:
        bodies = [c["body"] for c in bug["comments"]]
        assert any(body.startswith(tuple(comments)) for body in bodies), bug["id"]


def test_unicode_nulls_and_dates_with_offsets(
    truth: Truth,
) -> None:
    products = list(truth["products"].values())
    tests = list(truth["tests"].values())
    assert any(not p["name"].isascii() for p in products)
    assert any(not t["title"].isascii() for t in tests)
    assert any(t["instructions"] is None for t in tests)
    assert any(p["description"] is None for p in products)
    ends = [str(t["end_at"]) for t in tests]
    assert any(e.endswith("Z") for e in ends)
    assert any(e[-6] in "+-" and not e.endswith("+00:00") for e in ends)
    for text in ends:
        assert datetime.fromisoformat(text.replace("Z", "+00:00")).tzinfo is not None


def test_test_ids_grow_with_time_across_the_account(
    truth: Truth,
) -> None:
    by_end = sorted(
        truth["tests"].values(),
        key=lambda t: datetime.fromisoformat(str(t["end_at"]).replace("Z", "+00:00")),
    )
    ids = [t["id"] for t in by_end]
    assert ids == sorted(ids)


def test_bug_ids_map_back_to_their_test() -> None:
    account = build_account(SPEC)
    context = account.bug_contexts[account.tests[7]["id"]]
    bugs = generate_bugs(SPEC, context)
    assert len(bugs) == SPEC.bugs_per_test
    assert generate_bugs(SPEC, context) == bugs
    for bug in bugs:
        assert bug["test"]["id"] == context.test_id
        assert owner_of_generated_bug(bug["id"], SPEC.bugs_per_test) == context.test_id
    assert owner_of_generated_bug(5, SPEC.bugs_per_test) is None


def test_features_of_a_test_belong_to_its_product(
    truth: Truth,
) -> None:
    for test in truth["tests"].values():
        product_id = test["product"]["id"]
        own = truth["features"][product_id]
        for feature in test["features"]:
            assert feature["feature_id"] in own


def test_severity_mix_is_realistic(truth: Truth) -> None:
    counts = Counter(b["severity"] for b in truth["bugs"].values())
    assert counts["low"] > counts["critical"] > counts["custom"]


@pytest.mark.parametrize(
    "bad",
    [
        {"products": -1},
        {"tests_per_product": -5},
        {"products": 2, "section_products": 3},
        {"section_products": 1, "sections_per_product": 0},
    ],
)
def test_spec_rejects_impossible_sizes(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must be"):
        DatasetSpec(**bad)  # type: ignore[arg-type]
