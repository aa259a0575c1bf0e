"""The sandbox's account as it is right now: queries, triage, and evolution over time.

``SandboxWorld`` is shared between the HTTP server's thread and the test that drives it, so every
public method takes the world's lock and returns copies, never live objects.

Example::

    world = SandboxWorld(DatasetSpec(products=2))
    page = world.tests_page(product_id=101, page=1, per_page=25)
    report = world.evolve()             # new tests, status changes, bugs, a deletion
    truth = world.snapshot()            # what a complete mirror must hold
"""

from __future__ import annotations

import marshal
import random
import threading
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from testio_mirror.sandbox.bug_details import details_rng
from testio_mirror.sandbox.bug_store import SandboxBugs
from testio_mirror.sandbox.dataset import (
    EVOLVED_BUG_ID_BASE,
    JSON,
    OPEN_STATUSES,
    REJECT_REASONS,
    DatasetSpec,
    bug_context,
    build_account,
    iso,
    make_bug,
    make_test,
    parse_iso,
    product_has_sections,
)
from testio_mirror.sandbox.errors import NotFoundError, UnprocessableError
from testio_mirror.sandbox.evolve_report import NEXT_STATUS, EvolveReport
from testio_mirror.sandbox.test_case_data import (
    generate_executions,
    generate_test_cases,
    test_case_truth,
)
from testio_mirror.sandbox.triage import TriageAction, apply_triage

_T = TypeVar("_T")

EXPORT_STATUSES = ("exported", "not_exported")


class SandboxWorld:
    """A mutable, thread-safe TestIO account generated from a ``DatasetSpec``."""

    def __init__(self, spec: DatasetSpec) -> None:
        self.spec = spec
        self._lock = threading.RLock()
        account = build_account(spec)
        self._products: dict[int, JSON] = {p["id"]: p for p in account.products}
        self._features = account.features
        self._section_features = account.section_features
        self._tests: dict[int, JSON] = {t["id"]: t for t in account.tests}
        self._end_epoch: dict[int, float] = {
            t["id"]: parse_iso(t["end_at"]).timestamp() for t in account.tests
        }
        self._product_tests: dict[int, set[int]] = {pid: set() for pid in self._products}
        for test in account.tests:
            self._product_tests[test["product"]["id"]].add(test["id"])
        self._order_cache: dict[int, list[int]] = {}
        self._bugs = SandboxBugs(spec, account.bug_contexts)
        self._next_test_id = max(self._tests, default=100_000) + 1
        self._next_comment_id = EVOLVED_BUG_ID_BASE + 1
        self._clock: datetime = spec.anchor
        self._steps = 0

    # -- reads -------------------------------------------------------------------------------

    def products(self) -> list[JSON]:
        with self._lock:
            return _clone(list(self._products.values()))

    def product(self, product_id: int) -> JSON:
        with self._lock:
            return _clone(self._product(product_id))

    def features(self, product_id: int) -> list[JSON]:
        """Features of a product without sections.

        Raises:
            NotFoundError: unknown product.
            UnprocessableError: the product has sections; ask per section instead.
        """
        with self._lock:
            product = self._product(product_id)
            if product_has_sections(product):
                raise UnprocessableError(
                    "this product has sections: use products/{id}/sections/{sid}/features"
                )
            return _clone(self._features[product_id])

    def section_features(self, product_id: int, section_id: int) -> list[JSON]:
        with self._lock:
            product = self._product(product_id)
            section_ids = {s["id"] for s in product["sections_with_default"]}
            if section_id not in section_ids:
                raise NotFoundError(f"section {section_id} not found in product {product_id}")
            by_id = {f["id"]: f for f in self._features[product_id]}
            if not product_has_sections(product):
                return _clone(list(by_id.values()))
            ids = self._section_features.get((product_id, section_id), [])
            return _clone([by_id[i] for i in ids])

    def user_stories(self, product_id: int, section_id: int | None) -> list[JSON]:
        with self._lock:
            product = self._product(product_id)
            if product_has_sections(product):
                if section_id is None:
                    raise UnprocessableError("section_id is required for products with sections")
                features = self.section_features(product_id, section_id)
            else:
                features = self._features[product_id]
            stories: list[JSON] = []
            for feature in features:
                for number, text in enumerate(feature["user_stories"]):
                    stories.append(
                        {
                            "id": feature["id"] * 100 + number,
                            "title": text,
                            "feature_id": feature["id"],
                            "section_id": section_id,
                        }
                    )
            return stories

    def test_environments(self, product_id: int) -> list[JSON]:
        with self._lock:
            self._product(product_id)
            return [
                {
                    "id": 900 + product_id,
                    "title": "Staging",
                    "url": f"https://staging{product_id}.example.com",
                }
            ]

    def test_count(self, product_id: int) -> int:
        with self._lock:
            self._product(product_id)
            return len(self._product_tests[product_id])

    def tests_page(self, product_id: int, page: int, per_page: int) -> list[JSON]:
        """One page of a product's tests, newest first by ``end_at`` (then by id)."""
        with self._lock:
            self._product(product_id)
            order = self._ordered_tests(product_id)
            chunk = order[(page - 1) * per_page : page * per_page]
            return [_listing_view(self._tests[test_id]) for test_id in chunk]

    def test(self, test_id: int) -> JSON:
        with self._lock:
            if test_id not in self._tests:
                raise NotFoundError(f"exploratory test {test_id} not found")
            return _clone(self._tests[test_id])

    def bugs(
        self,
        test_ids: list[int] | None = None,
        product_ids: list[int] | None = None,
        section_ids: list[int] | None = None,
        export_status: str | None = None,
    ) -> list[JSON]:
        """Every bug matching all given filters; at least one filter is required.

        Raises:
            UnprocessableError: no filter, or an unknown ``export_status``.
        """
        if test_ids is None and product_ids is None and section_ids is None:
            raise UnprocessableError(
                "give filter_test_cycle_ids, filter_product_ids or filter_section_ids"
            )
        if export_status is not None and export_status not in EXPORT_STATUSES:
            raise UnprocessableError(f"export_status must be one of {', '.join(EXPORT_STATUSES)}")
        with self._lock:
            candidates = self._candidate_tests(test_ids, product_ids)
            wanted_sections = set(section_ids) if section_ids is not None else None
            found: list[JSON] = []
            for test_id in candidates:
                test = self._tests[test_id]
                if wanted_sections is not None and self._section_of(test) not in wanted_sections:
                    continue
                for bug in self._bugs.of(test_id):
                    exported = bug["exported_at"] is not None
                    if export_status == "exported" and not exported:
                        continue
                    if export_status == "not_exported" and exported:
                        continue
                    found.append(bug)
            # One copy of the whole list: several times quicker than one per bug.
            return _clone(found)

    def bug(self, bug_id: int) -> JSON:
        with self._lock:
            return _clone(self._find_bug(bug_id))

    def test_case_test(self, product_id: int, test_id: int) -> JSON:
        """A test-case test's cases, ``{"test_cases": [...]}``.

        Raises:
            NotFoundError: unknown product or test, another product's test, an exploratory test.
        """
        with self._lock:
            self._test_case_test(product_id, test_id)
            return {"test_cases": generate_test_cases(self.spec.seed, test_id)}

    def test_case_results(self, product_id: int, test_id: int) -> list[JSON]:
        """Every execution of a test-case test's cases (none before it runs); raises as
        ``test_case_test``."""
        with self._lock:
            return generate_executions(self.spec.seed, self._test_case_test(product_id, test_id))

    def reject_reasons(self) -> list[JSON]:
        return _clone(list(REJECT_REASONS))

    def warm_bug_cache(self) -> int:
        """Generate every test's bugs now when they all fit in what is kept, so the first
        listing of bugs costs what later ones do. Returns how many bugs were generated."""
        with self._lock:
            return self._bugs.warm(list(self._tests))

    # -- triage ------------------------------------------------------------------------------

    def triage(
        self,
        bug_id: int,
        action: TriageAction,
        reason: str | None = None,
        comment: str | None = None,
    ) -> JSON:
        """Apply one of the five triage PUTs and answer the bug as it is now.

        Raises:
            NotFoundError: unknown bug.
            UnprocessableError: ``reject`` without a known reason key.
        """
        with self._lock:
            bug = self._find_bug(bug_id, for_update=True)
            apply_triage(
                bug,
                action,
                reason=reason,
                comment=comment,
                now=iso(self._clock),
                comment_id=self._next_comment_id + 1,
            )
            if action == "reject":
                self._next_comment_id += 1
            return _clone(bug)

    # -- evolution ---------------------------------------------------------------------------

    def evolve(self, steps: int = 1) -> EvolveReport:
        """Move the account forward: new tests at the head, open tests progressing or being
        extended, new bugs, triage, and one deleted test per step."""
        report = EvolveReport()
        with self._lock:
            for _ in range(steps):
                self._evolve_step(report)
        return report

    def add_test(self, product_id: int, status: str = "running") -> int:
        """A new test at the head of a product's listing (the newest ``end_at``)."""
        with self._lock:
            product = self._product(product_id)
            rng = random.Random(f"{self.spec.seed}:new-test:{self._next_test_id}")
            newest = max(
                (self._end_epoch[t] for t in self._product_tests[product_id]),
                default=self._clock.timestamp(),
            )
            end = datetime.fromtimestamp(newest, self._clock.tzinfo) + timedelta(days=1)
            test_id = self._next_test_id
            self._next_test_id += 1
            test = make_test(self.spec, rng, test_id, product, self._features, end, status)
            self._tests[test_id] = test
            self._bugs.set_context(test_id, replace(bug_context(test, product, 0), closed=False))
            self._end_epoch[test_id] = parse_iso(test["end_at"]).timestamp()
            self._product_tests[product_id].add(test_id)
            self._order_cache.pop(product_id, None)
            return test_id

    def remove_test(self, test_id: int) -> None:
        """The test vanishes upstream, bugs included."""
        with self._lock:
            test = self._tests.pop(test_id, None)
            if test is None:
                raise NotFoundError(f"exploratory test {test_id} not found")
            product_id = test["product"]["id"]
            self._product_tests[product_id].discard(test_id)
            self._order_cache.pop(product_id, None)
            self._bugs.drop(test_id)

    def set_test_status(self, test_id: int, status: str) -> None:
        with self._lock:
            self._test(test_id)["status"] = status

    def extend_test(self, test_id: int, days: int = 1) -> None:
        """Push a test's ``end_at`` later, which moves it up the newest-first listing."""
        with self._lock:
            test = self._test(test_id)
            end = parse_iso(test["end_at"]) + timedelta(days=days)
            test["end_at"] = iso(end)
            self._end_epoch[test_id] = end.timestamp()
            self._order_cache.pop(test["product"]["id"], None)

    def move_test(self, test_id: int, product_id: int) -> None:
        """Re-file a test under another product (its bugs follow)."""
        with self._lock:
            test = self._test(test_id)
            target = self._product(product_id)
            bugs = self._materialize_bugs(test_id)
            old = test["product"]["id"]
            self._product_tests[old].discard(test_id)
            self._product_tests[product_id].add(test_id)
            self._order_cache.pop(old, None)
            self._order_cache.pop(product_id, None)
            test["product"] = {"id": target["id"], "name": target["name"]}
            test["section"] = None
            for bug in bugs:
                bug["product"] = {"id": target["id"], "name": target["name"]}

    def add_bug(self, test_id: int) -> int:
        """A new forwarded bug on a test; returns its id."""
        with self._lock:
            self._test(test_id)
            bug_id = self._bugs.new_id()
            rng = random.Random(f"{self.spec.seed}:new-bug:{bug_id}")
            details = details_rng(self.spec.seed, f"bug-{bug_id}")
            context = self._bugs.context(test_id)
            bug = make_bug(rng, bug_id, context, closed=False, details=details)
            bug["status"] = "forwarded"
            bug["auto_accepted"] = False
            bug["comments"] = []
            bug["reported_at"] = iso(self._clock)
            bug["product"] = _clone(self._tests[test_id]["product"])
            self._bugs.add(test_id, bug)
            return bug_id

    # -- truth -------------------------------------------------------------------------------

    def snapshot(self) -> JSON:
        """Everything the account holds now, keyed by id: what a complete mirror must equal."""
        with self._lock:
            tests = {test_id: _clone(test) for test_id, test in self._tests.items()}
            bugs = {bug["id"]: _clone(bug) for t in self._tests for bug in self._bugs.of(t)}
            return {
                "products": {p["id"]: _clone(p) for p in self._products.values()},
                "features": {
                    pid: {f["id"]: _clone(f) for f in feats}
                    for pid, feats in self._features.items()
                },
                "tests": tests,
                "bugs": bugs,
                "product_tests": {pid: list(self._ordered_tests(pid)) for pid in self._products},
                "test_case_tests": {
                    test_id: test_case_truth(self.spec.seed, test)
                    for test_id, test in self._tests.items()
                    if test["testing_type"] is None
                },
            }

    def counts(self) -> JSON:
        with self._lock:
            return {
                "products": len(self._products),
                "features": sum(len(f) for f in self._features.values()),
                "tests": len(self._tests),
                "bugs": sum(self._bugs.count(t) for t in self._tests),
                "evolve_steps": self._steps,
            }

    # -- internals (lock held) ---------------------------------------------------------------

    def _product(self, product_id: int) -> JSON:
        if product_id not in self._products:
            raise NotFoundError(f"product {product_id} not found")
        return self._products[product_id]

    def _test(self, test_id: int) -> JSON:
        if test_id not in self._tests:
            raise NotFoundError(f"exploratory test {test_id} not found")
        return self._tests[test_id]

    def _test_case_test(self, product_id: int, test_id: int) -> JSON:
        self._product(product_id)
        test = self._tests.get(test_id)
        if test is None or test["product"]["id"] != product_id or test["testing_type"] is not None:
            raise NotFoundError(f"test case test {test_id} not found in product {product_id}")
        return test

    def _ordered_tests(self, product_id: int) -> list[int]:
        order = self._order_cache.get(product_id)
        if order is None:
            order = sorted(
                self._product_tests[product_id],
                key=lambda t: (self._end_epoch[t], t),
                reverse=True,
            )
            self._order_cache[product_id] = order
        return order

    def _candidate_tests(
        self, test_ids: list[int] | None, product_ids: list[int] | None
    ) -> list[int]:
        if test_ids is not None:
            chosen = [t for t in dict.fromkeys(test_ids) if t in self._tests]
        else:
            chosen = sorted(self._tests)
        if product_ids is not None:
            wanted = set(product_ids)
            chosen = [t for t in chosen if self._tests[t]["product"]["id"] in wanted]
        return chosen

    def _section_of(self, test: JSON) -> int:
        if test["section"] is not None:
            return int(test["section"]["id"])
        return int(self._products[test["product"]["id"]]["default_section_id"])

    def _materialize_bugs(self, test_id: int) -> list[JSON]:
        self._test(test_id)
        return self._bugs.for_update(test_id)

    def _find_bug(self, bug_id: int, for_update: bool = False) -> JSON:
        owner = self._bugs.owner(bug_id)
        if owner is not None and owner in self._tests:
            bugs = self._materialize_bugs(owner) if for_update else self._bugs.of(owner)
            for bug in bugs:
                if bug["id"] == bug_id:
                    return bug
        raise NotFoundError(f"bug {bug_id} not found")

    def _evolve_step(self, report: EvolveReport) -> None:
        self._steps += 1
        report.steps += 1
        self._clock += timedelta(hours=1)
        rng = random.Random(f"{self.spec.seed}:evolve:{self._steps}")
        for product_id in sorted(self._products):
            if rng.random() < 0.6:
                report.added_tests.append(self.add_test(product_id))
            newest = self._ordered_tests(product_id)[:12]
            open_tests = [t for t in newest if self._tests[t]["status"] in OPEN_STATUSES]
            if open_tests:
                test_id = rng.choice(open_tests)
                old = self._tests[test_id]["status"]
                self._tests[test_id]["status"] = NEXT_STATUS[old]
                report.status_changes.append((test_id, old, NEXT_STATUS[old]))
            buggy = [t for t in open_tests if self._tests[t]["status"] in ("running", "locked")]
            if buggy:
                target = rng.choice(buggy)
                for _ in range(rng.randint(1, 2)):
                    report.new_bugs.append(self.add_bug(target))
                if rng.random() < 0.3:
                    self.extend_test(target, days=rng.randint(1, 2))
                    report.moved_tests.append(target)
            self._triage_one(rng, newest, report)
        candidates = [pid for pid in sorted(self._products) if len(self._product_tests[pid]) > 1]
        if candidates:
            product_id = rng.choice(candidates)
            victim = rng.choice(sorted(self._product_tests[product_id]))
            self.remove_test(victim)
            report.removed_tests.append(victim)

    def _triage_one(self, rng: random.Random, test_ids: list[int], report: EvolveReport) -> None:
        for test_id in test_ids:
            forwarded = [b["id"] for b in self._bugs.of(test_id) if b["status"] == "forwarded"]
            if forwarded:
                bug_id = rng.choice(forwarded)
                if rng.random() < 0.7:
                    self.triage(bug_id, "accept")
                else:
                    self.triage(bug_id, "reject", reason=rng.choice(REJECT_REASONS)["key"])
                report.triaged_bugs.append(bug_id)
                return


def _clone(value: _T) -> _T:
    """A deep copy of JSON-shaped data; marshal round-trips it several times faster than
    ``copy.deepcopy``, which matters when a benchmark asks for thousands of bugs."""
    return cast(_T, marshal.loads(marshal.dumps(cast(Any, value))))  # noqa: S302 (bytes made one line up)


def _listing_view(test: JSON) -> JSON:
    # The list endpoint leaves out the product: it is implied by the path.
    view: JSON = _clone(test)
    view.pop("product", None)
    return view
