"""Deterministic TestIO-shaped data for the sandbox, built from ``docs/testio-api.md`` facts.

Everything is derived from ``DatasetSpec.seed``: the same spec always yields the same account.
Products, features and tests are built eagerly (an account has at most tens of thousands of tests);
bugs are generated on demand from their test's ``BugContext`` so a 300,000-bug account costs no
memory until a request asks for it.

Example::

    spec = DatasetSpec(seed=7, products=2, tests_per_product=50, bugs_per_test=3)
    account = build_account(spec)
    bugs = generate_bugs(spec, account.bug_contexts[account.tests[0]["id"]])
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from testio_mirror.sandbox.bug_details import PLATFORM_FAMILIES, bug_devices, details_rng, report_of

JSON = dict[str, Any]

PRODUCT_ID_BASE = 100
SECTION_ID_BASE = 5_000
FEATURE_ID_BASE = 20_000
TEST_FEATURE_ID_BASE = 400_000
TEST_ID_BASE = 100_000
BUG_ID_BASE = 1_000_000
# Bugs born after the start (evolve mode) get ids far above the generated ones.
EVOLVED_BUG_ID_BASE = 900_000_000
COMMENT_ID_BASE = 7_000_000

DEFAULT_ANCHOR = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

PRODUCT_TYPES = (
    "website",
    "mobile_app_ios",
    "mobile_app_android",
    "mobile_app_windows",
    "streaming_app",
    "gaming",
)
OPEN_STATUSES = ("initialized", "waiting", "running", "locked", "customer_finalized")
FINAL_STATUSES = ("archived", "cancelled")
TEST_STATUSES = OPEN_STATUSES + FINAL_STATUSES
TESTING_TYPES: tuple[str | None, ...] = ("coverage", "focused", "rapid", "usability", "external")
SEVERITIES = ("low", "high", "critical", "visual", "content", "custom")
SEVERITY_WEIGHTS = (35, 30, 10, 15, 8, 2)

REJECT_REASONS: tuple[JSON, ...] = (
    {
        "key": "not_reproducible",
        "name": "Not reproducible",
        "default_comment": "We could not reproduce this bug with the given steps.",
    },
    {
        "key": "intended_behavior",
        "name": "Intended behavior",
        "default_comment": "This is the intended behavior of the product.",
    },
    {
        "key": "out_of_scope",
        "name": "Out of scope",
        "default_comment": "This bug is outside the scope of the test.",
    },
    {
        "key": "duplicate",
        "name": "Duplicate",
        "default_comment": "This bug duplicates one reported earlier.",
    },
    {
        "key": "known_issue",
        "name": "Known issue",
        "default_comment": "This issue is already known to our team.",
    },
)

# Unicode on purpose: titles in the wild carry accents, CJK and emoji.
_PRODUCT_NAMES = (
    "Acme Web Shop",
    "Café Ümlaut Checkout",
    "NordBank Mobile",
    "東京 Travel App",
    "StreamBox TV",
    "Pixel Quest 🎮",
    "Żabka Delivery",
    "Ωmega Insurance Portal",
)
_AREAS = (
    "Login",
    "Checkout",
    "Search",
    "Profile",
    "Cart",
    "Payments",
    "Onboarding",
    "Settings",
    "Notifications",
    "Wishlist",
    "Recherche avancée",
    "お気に入り",
)
_VERBS = ("crashes", "freezes", "shows wrong text", "ignores input", "overlaps", "misaligns")
_OFFSETS_MINUTES = (0, 0, 60, 120, -300, 330, -420)
_CUSTOMER_USERS = ("Dana Whitfield", "Jörg Müller", "Aiko Tanaka", "Sam Okafor")
TESTERS = (
    "tester_ana",
    "tester_björn",
    "tester_chen",
    "tester_dev",
    "tester_eli",
    "tester_fátima",
)


@dataclass(frozen=True)
class DatasetSpec:
    """The size and seed of a sandbox account."""

    seed: int = 1
    products: int = 3
    section_products: int = 1
    sections_per_product: int = 2
    features_per_product: int = 6
    tests_per_product: int = 40
    bugs_per_test: int = 5
    anchor: datetime = DEFAULT_ANCHOR

    def __post_init__(self) -> None:
        for name in ("products", "features_per_product", "tests_per_product", "bugs_per_test"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if not 0 <= self.section_products <= self.products:
            raise ValueError("section_products must be between 0 and products")
        if self.section_products and self.sections_per_product < 1:
            raise ValueError("sections_per_product must be >= 1 when there are section products")


# Named sizes: the demo's, and the benchmark datasets S and M (products x tests x bugs per test).
PRESETS: dict[str, dict[str, int]] = {
    "demo": {"products": 3, "tests_per_product": 60, "bugs_per_test": 4},
    "S": {"products": 5, "tests_per_product": 400, "bugs_per_test": 5},
    "M": {"products": 20, "tests_per_product": 1500, "bugs_per_test": 10},
}


def preset(name: str, seed: int = 1) -> DatasetSpec:
    """The named dataset (``demo``, ``S`` or ``M``).

    Raises:
        KeyError: an unknown name.
    """
    sizes = PRESETS[name]
    return DatasetSpec(
        seed=seed,
        products=sizes["products"],
        tests_per_product=sizes["tests_per_product"],
        bugs_per_test=sizes["bugs_per_test"],
    )


@dataclass(frozen=True)
class BugContext:
    """What bug generation needs to know about a test, frozen at the test's birth."""

    test_id: int
    test_title: str
    product_id: int
    product_name: str
    # (test-feature id, global feature id, feature title) of each feature under test
    features: tuple[tuple[int, int, str], ...]
    start: datetime
    end: datetime
    closed: bool
    bug_count: int


@dataclass
class Account:
    """A generated account: plain JSON-shaped dicts, as the API would send them."""

    products: list[JSON]
    # product id -> features (each feature once, even in several sections)
    features: dict[int, list[JSON]]
    # (product id, section id) -> feature ids shown in that section
    section_features: dict[tuple[int, int], list[int]]
    tests: list[JSON]
    bug_contexts: dict[int, BugContext] = field(default_factory=dict)


def iso(moment: datetime, offset_minutes: int = 0, fraction: bool = False) -> str:
    """An ISO 8601 string for ``moment`` shown in a given UTC offset ("Z" for zero)."""
    local = moment.astimezone(timezone(timedelta(minutes=offset_minutes)))
    text = local.isoformat(timespec="milliseconds" if fraction else "seconds")
    return text.replace("+00:00", "Z") if offset_minutes == 0 else text


def parse_iso(text: str) -> datetime:
    """Parse the ISO forms the sandbox writes (``Z`` or an offset) into an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def random_iso(rng: random.Random, moment: datetime) -> str:
    """``moment`` written in a randomly chosen offset and precision, as real data varies."""
    return iso(moment, rng.choice(_OFFSETS_MINUTES), fraction=rng.random() < 0.3)


def product_has_sections(product: JSON) -> bool:
    """The rule from the API notes: sections, or more than the default section."""
    return bool(product["sections"]) or len(product["sections_with_default"]) > 1


def build_account(spec: DatasetSpec) -> Account:
    """Generate the whole account (but bugs) described by ``spec``."""
    rng = random.Random(f"{spec.seed}:account")
    products: list[JSON] = []
    features: dict[int, list[JSON]] = {}
    section_features: dict[tuple[int, int], list[int]] = {}
    next_section = SECTION_ID_BASE
    next_feature = FEATURE_ID_BASE
    for index in range(spec.products):
        product_id = PRODUCT_ID_BASE + index + 1
        default_section = next_section
        next_section += 1
        sections: list[JSON] = []
        if index < spec.section_products:
            for number in range(spec.sections_per_product):
                sections.append({"id": next_section, "name": f"Section {number + 1}"})
                next_section += 1
        name = _PRODUCT_NAMES[index % len(_PRODUCT_NAMES)]
        if index >= len(_PRODUCT_NAMES):
            name = f"{name} {index // len(_PRODUCT_NAMES) + 1}"
        products.append(
            {
                "id": product_id,
                "name": name,
                # Every third product has no description: the API allows null here.
                "description": None if index % 3 == 1 else f"The {name} product.",
                "type": PRODUCT_TYPES[index % len(PRODUCT_TYPES)],
                "default_section_id": default_section,
                "sections": sections,
                "sections_with_default": [{"id": default_section, "name": "Default"}, *sections],
                "customer_id": 42,  # an extra field clients must pass through
            }
        )
        product_features: list[JSON] = []
        for number in range(spec.features_per_product):
            area = _AREAS[(index + number) % len(_AREAS)]
            product_features.append(
                {
                    "id": next_feature,
                    "title": f"{area} {number + 1}",
                    "description": None if rng.random() < 0.2 else f"Everything about {area}.",
                    "howtofind": f"Open the app and go to {area}.",
                    "user_stories": [
                        f"As a user I can use {area} ({story + 1})"
                        for story in range(rng.randint(0, 3))
                    ],
                }
            )
            next_feature += 1
        features[product_id] = product_features
        section_ids = [s["id"] for s in sections] or [default_section]
        for section_id in section_ids:
            section_features[(product_id, section_id)] = []
        for number, feature in enumerate(product_features):
            home = section_ids[number % len(section_ids)]
            section_features[(product_id, home)].append(feature["id"])
            # Some features show in a second section: clients must de-duplicate.
            if len(section_ids) > 1 and number % 3 == 0:
                other = section_ids[(number + 1) % len(section_ids)]
                section_features[(product_id, other)].append(feature["id"])
    tests, contexts = _build_tests(spec, products, features)
    return Account(products, features, section_features, tests, contexts)


def _build_tests(
    spec: DatasetSpec, products: list[JSON], features: dict[int, list[JSON]]
) -> tuple[list[JSON], dict[int, BugContext]]:
    drafts: list[tuple[datetime, JSON, random.Random]] = []
    for product in products:
        rng = random.Random(f"{spec.seed}:tests:{product['id']}")
        moment = spec.anchor + timedelta(days=3)
        # Newest first: rank 0 is the newest test of the product.
        for rank in range(spec.tests_per_product):
            status = _status_for_rank(rank, rng)
            end = moment - timedelta(hours=rng.randint(0, 23))
            moment -= timedelta(days=rng.randint(1, 3))
            drafts.append((end, {"_rank_status": status, "product": product}, rng))
    # Ids grow with time across the account, as a real account's do.
    drafts.sort(key=lambda draft: draft[0])
    tests: list[JSON] = []
    contexts: dict[int, BugContext] = {}
    for offset, (end, draft, rng) in enumerate(drafts):
        test_id = TEST_ID_BASE + offset + 1
        test = make_test(spec, rng, test_id, draft["product"], features, end, draft["_rank_status"])
        tests.append(test)
        contexts[test_id] = bug_context(test, draft["product"], spec.bugs_per_test)
    return tests, contexts


def _status_for_rank(rank: int, rng: random.Random) -> str:
    # The newest tests of a product are the open ones; every status shows up in any product with
    # seven tests or more.
    if rank < len(OPEN_STATUSES):
        return OPEN_STATUSES[rank]
    return "cancelled" if rng.random() < 0.08 or rank == len(OPEN_STATUSES) + 1 else "archived"


def make_test(
    spec: DatasetSpec,
    rng: random.Random,
    test_id: int,
    product: JSON,
    features: dict[int, list[JSON]],
    end: datetime,
    status: str,
) -> JSON:
    """One exploratory test as the detail endpoint returns it."""
    start = end - timedelta(hours=rng.randint(2, 72))
    area = rng.choice(_AREAS)
    title = f"{area} regression #{test_id % 1000}"
    if rng.random() < 0.15:
        title += " ✨ réglage"
    testing_type = rng.choice(TESTING_TYPES) if rng.random() < 0.9 else None
    chosen = _pick_features(rng, features.get(product["id"], []))
    section = None
    if product["sections"]:
        picked = rng.choice(product["sections"])
        section = {"id": picked["id"], "name": picked["name"]}
    goal = f"Find functional bugs in {area}."
    instructions = None if rng.random() < 0.25 else "Use a fresh account. Stay on staging."
    out_of_scope = None if rng.random() < 0.5 else "Performance and load."
    return {
        "id": test_id,
        "title": title,
        "test_title": title,
        "status": status,
        "testing_type": testing_type,
        "goal": goal,
        "goal_text": goal,
        "instructions": instructions,
        "instructions_text": instructions,
        "out_of_scope": out_of_scope,
        "out_of_scope_text": out_of_scope,
        "start_at": random_iso(rng, start),
        "end_at": random_iso(rng, end),
        "review_status": None if status in OPEN_STATUSES[:3] else rng.choice(("reviewed", "open")),
        "enable_low": rng.random() < 0.8,
        "enable_high": True,
        "enable_critical": True,
        "created_by": rng.choice(_CUSTOMER_USERS),
        "submitted_by": None if status == "initialized" else rng.choice(_CUSTOMER_USERS),
        "product": {"id": product["id"], "name": product["name"]},
        "section": section,
        "test_environment": {
            "id": 900 + product["id"],
            "title": "Staging",
            "url": f"https://staging{product['id']}.example.com",
        },
        "features": chosen,
        "requirements": [
            {
                "category": "desktop" if rng.random() < 0.5 else "smartphone",
                "operating_system": rng.choice(("Windows", "macOS", "iOS", "Android")),
                "browsers": [rng.choice(("Chrome", "Firefox", "Safari"))],
                "devices": [],
            }
        ],
        "language": rng.choice(("en", "de", "ja")),
    }


def _pick_features(rng: random.Random, product_features: list[JSON]) -> list[JSON]:
    if not product_features:
        return []
    count = min(len(product_features), rng.randint(1, 3))
    picked = rng.sample(product_features, count)
    return [
        {
            "id": TEST_FEATURE_ID_BASE + rng.randint(1, 9_999_999),
            "feature_id": feature["id"],
            "title": feature["title"],
            "user_stories": list(feature["user_stories"]),
        }
        for feature in picked
    ]


def bug_context(test: JSON, product: JSON, bug_count: int) -> BugContext:
    """Freeze what the test's bugs are generated from."""
    return BugContext(
        test_id=test["id"],
        test_title=test["title"],
        product_id=product["id"],
        product_name=product["name"],
        features=tuple((f["id"], f["feature_id"], f["title"]) for f in test["features"]),
        start=parse_iso(test["start_at"]),
        end=parse_iso(test["end_at"]),
        closed=test["status"] in ("archived", "cancelled", "customer_finalized"),
        bug_count=bug_count,
    )


def generated_bug_ids(context: BugContext, bugs_per_test: int) -> range:
    """The ids of a test's generated bugs: a fixed block per test, so id -> test is arithmetic."""
    first = BUG_ID_BASE + (context.test_id - TEST_ID_BASE) * bugs_per_test
    return range(first, first + context.bug_count)


def owner_of_generated_bug(bug_id: int, bugs_per_test: int) -> int | None:
    """The test a generated bug belongs to, or None when ``bug_id`` is not a generated id."""
    if bugs_per_test == 0 or not BUG_ID_BASE <= bug_id < EVOLVED_BUG_ID_BASE:
        return None
    return TEST_ID_BASE + (bug_id - BUG_ID_BASE) // bugs_per_test


def generate_bugs(spec: DatasetSpec, context: BugContext) -> list[JSON]:
    """Every bug of one test, identical on every call."""
    rng = random.Random(f"{spec.seed}:bugs:{context.test_id}")
    details = details_rng(spec.seed, f"test-{context.test_id}")
    return [
        make_bug(rng, bug_id, context, closed=context.closed, details=details)
        for bug_id in generated_bug_ids(context, spec.bugs_per_test)
    ]


def make_bug(
    rng: random.Random,
    bug_id: int,
    context: BugContext,
    closed: bool,
    *,
    details: random.Random,
) -> JSON:
    """One bug as ``GET bugs/{id}`` returns it; its devices and report are drawn from
    ``details`` (``bug_details.details_rng``), so they draw nothing more from ``rng``."""
    severity = rng.choices(SEVERITIES, SEVERITY_WEIGHTS)[0]
    if closed:
        status = rng.choices(("accepted", "rejected", "forwarded"), (65, 28, 7))[0]
    else:
        status = rng.choices(("accepted", "rejected", "forwarded"), (20, 10, 70))[0]
    span = max((context.end - context.start).total_seconds(), 1.0)
    reported = context.start + timedelta(seconds=rng.uniform(0, span))
    feature = rng.choice(context.features) if context.features else None
    area = feature[2] if feature else "the app"
    steps: list[str] | str = [f"Open {area}", "Tap the main button", "Watch the screen"]
    if rng.random() < 0.2:
        steps = "\n".join(steps)  # the API sends steps as one string sometimes
    comments: list[JSON] = []
    if status == "rejected":
        reason = rng.choice(REJECT_REASONS)
        comments.append(
            {
                "id": COMMENT_ID_BASE + bug_id,
                "body": reason["default_comment"],
                "author": {"name": rng.choice(_CUSTOMER_USERS)},
            }
        )
    bug: JSON = {
        "id": bug_id,
        "title": f"{area} {rng.choice(_VERBS)}",
        "severity": severity,
        "status": status,
        "auto_accepted": status == "accepted" and rng.random() < 0.3,
        "known": rng.random() < 0.1,
        "actual_result": f"The {area} screen {rng.choice(_VERBS)}.",
        "expected_result": None if rng.random() < 0.1 else "It works as described.",
        "steps": steps,
        "reported_at": random_iso(rng, reported),
        "author": {"name": rng.choice(TESTERS)},
        "test": {"id": context.test_id, "title": context.test_title},
        "test_feature": {"id": feature[0]} if feature else None,
        "feature": {"id": feature[1], "title": feature[2]} if feature else None,
        "product": {"id": context.product_id, "name": context.product_name},
        "comments": comments,
        # One draw of four from ``rng``, as the one-line device names took.
        "devices": bug_devices(details, rng.randrange(PLATFORM_FAMILIES)),
        "attachments": [
            {"id": bug_id * 10 + n, "url": f"https://files.example.com/{bug_id}/{n}.png"}
            for n in range(rng.randint(0, 2))
        ],
        "location": None if rng.random() < 0.5 else f"https://staging.example.com/{area.lower()}",
        "language": "en",
        "exported_at": None,
    }
    report = report_of(details, context.product_id, context.product_id - PRODUCT_ID_BASE - 1)
    if report is not None:
        bug["report"] = report
    return bug
