"""A product that leaves the account takes what hangs off it: its sections, features, tests and
bugs are tombstoned with it (listings, gets, search, statistics and counts stop showing them),
and come back as a sync fetches them again."""

from __future__ import annotations

import pytest

from testio_mirror.errors import RemovedError
from testio_mirror.store.bugs import write_bugs
from testio_mirror.store.exploratory_tests import write_tests
from testio_mirror.store.features import write_features
from testio_mirror.store.mirror import Mirror
from testio_mirror.store.products import write_products
from testio_mirror.store.records import BugFilter
from testio_mirror.store.sync_state import ListingState, save_listing_state
from testio_mirror.upstream.models import Bug, ExploratoryTest, Feature, Product
from tests.helpers.seeded_mirror import Seeded, collect, ids_of


async def _remove_last_product(mirror: Mirror) -> tuple[list[Product], int]:
    products = await mirror.products.stored_products()
    async with mirror.db.transaction() as conn:
        for product in products:
            # As a complete listing leaves it: status shows the product.
            await save_listing_state(
                conn, ListingState(product.id, 4, True, False, "run-1", None, None, None)
            )
        await write_products(conn, products[:-1], mirror.policy.stamp(), complete=True)
    return products, products[-1].id


async def test_a_removed_product_takes_its_features_tests_and_bugs_everywhere(
    seeded: Seeded,
) -> None:
    mirror = seeded.mirror
    everything = await mirror.products.stored_products()
    gone = everything[-1].id
    tests = await ids_of(mirror.tests.list_tests, product_id=gone)
    bugs = await ids_of(mirror.bugs.list_bugs, bug_filter=BugFilter(product_id=gone))
    features = (await mirror.features.list_features(gone)).value
    before = await mirror.sync_state.counts()
    word = (await mirror.tests.get_test(tests[0])).value.title.split()[0]
    assert tests
    assert bugs
    assert features

    await _remove_last_product(mirror)

    assert await ids_of(mirror.tests.list_tests, product_id=gone) == []
    assert not set(tests) & set(await ids_of(mirror.tests.list_tests))
    assert not set(bugs) & set(await ids_of(mirror.bugs.list_bugs))
    of_gone = (await mirror.bugs.stats("severity", BugFilter(product_id=gone))).value
    assert (of_gone.groups, of_gone.total) == ([], 0)
    every_group = (await mirror.bugs.stats("severity")).value
    assert every_group.total == before["bugs"] - len(bugs)
    assert sum(group.total for group in every_group.groups) == every_group.total
    assert await mirror.search.search(word, product_id=gone) == []
    assert all(hit.product_id != gone for hit in await mirror.search.search(word, limit=50))
    assert await mirror.sync_state.counts() == {
        **before,
        "products": before["products"] - 1,
        "features": before["features"] - len(features),
        "tests": before["tests"] - len(tests),
        "bugs": before["bugs"] - len(bugs),
    }
    assert gone not in await mirror.sync_state.listing_states()
    assert (await mirror.bugs.counts_for_test(tests[0])) == {"severity": {}, "status": {}}
    with pytest.raises(RemovedError, match=f"test {tests[0]} was removed from the TestIO account"):
        await mirror.tests.get_test(tests[0])
    with pytest.raises(RemovedError, match=f"bug {bugs[0]} was removed from the TestIO account"):
        await mirror.bugs.get_bug(bugs[0])
    with pytest.raises(RemovedError, match=f"product {gone} was removed from the TestIO account"):
        await mirror.features.list_features(gone)
    with pytest.raises(RemovedError, match=f"product {gone} was removed from the TestIO account"):
        await mirror.products.get_product(gone)


async def test_a_product_that_comes_back_is_restored_as_its_parts_are_fetched_again(
    seeded: Seeded,
) -> None:
    mirror = seeded.mirror
    snap = seeded.snap
    products, gone = await _remove_last_product(mirror)
    stamp = mirror.policy.stamp()
    async with mirror.db.transaction() as conn:
        await write_products(conn, products, stamp, complete=True)
        marks = await conn.execute_fetchall(
            "SELECT features_fetched_at FROM products WHERE id = ?", (gone,)
        )
    # Back in the product list, it needs its parts fetched again: its features and a full
    # listing of its tests (no listing state), the bugs of each test.
    assert marks[0][0] is None
    assert gone not in await mirror.sync_state.listing_states()
    assert await ids_of(mirror.tests.list_tests, product_id=gone) == []

    tests = [ExploratoryTest.from_wire(t) for t in snap["tests"].values()]
    tests = [t for t in tests if t.product_id == gone]
    async with mirror.db.transaction() as conn:
        features = [Feature.from_wire(f) for f in snap["features"][gone].values()]
        await write_features(conn, gone, features, stamp)
        await write_tests(conn, tests, stamp)
    listed = await collect(mirror.tests.list_tests, product_id=gone)
    assert sorted(t.id for t in listed) == sorted(t.id for t in tests)
    assert all(t.bugs_fetched_at is None and not t.deleted for t in listed)
    assert len((await mirror.features.list_features(gone)).value) == len(features)

    ids = [t.id for t in tests]
    bugs = [Bug.from_wire(b) for b in snap["bugs"].values() if b["test"]["id"] in ids]
    async with mirror.db.transaction() as conn:
        await write_bugs(conn, bugs, stamp, complete_for_tests=ids)
    found = await ids_of(mirror.bugs.list_bugs, bug_filter=BugFilter(product_id=gone))
    assert sorted(found) == sorted(b.id for b in bugs)
    assert not (await mirror.bugs.get_bug(bugs[0].id)).value.deleted
    assert not (await mirror.tests.get_test(ids[0])).value.deleted
