"""CustomerApiClient's endpoints against a faked network: features, health, prefetch (triage
writes: test_triage_writes.py)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx

from testio_mirror.upstream import client as client_module
from testio_mirror.upstream.errors import AuthError, RequestRejectedError
from testio_mirror.upstream.models import Product
from tests.helpers.fake_upstream import make_client
from tests.helpers.polling import settle


async def test_features_of_a_product_without_sections(api: respx.MockRouter) -> None:
    api.get("products/5").respond(200, json={"product": {"id": 5}})
    api.get("products/5/features").respond(200, json={"features": [{"id": 1}, {"id": 2}]})
    async with make_client() as client:
        assert [f.id for f in await client.features(5)] == [1, 2]


async def test_features_per_section_are_deduplicated(api: respx.MockRouter) -> None:
    flat = api.get("products/5/features").respond(422)
    api.get("products/5/sections/10/features").respond(
        200, json={"features": [{"id": 1}, {"id": 2}]}
    )
    api.get("products/5/sections/11/features").respond(
        200, json={"features": [{"id": 2}, {"id": 3}]}
    )
    product = Product.from_wire({"id": 5, "sections": [{"id": 10}, {"id": 11}]})
    async with make_client() as client:
        assert sorted(f.id for f in await client.features(product)) == [1, 2, 3]
    assert flat.call_count == 0


async def test_features_422_falls_back_to_sections_with_default(api: respx.MockRouter) -> None:
    product = {"id": 5, "sections_with_default": [{"id": 99}]}
    api.get("products/5").respond(200, json={"product": product})
    flat = api.get("products/5/features").respond(422, json={"error": "has sections"})
    api.get("products/5/sections/99/features").respond(200, json={"features": [{"id": 4}]})
    async with make_client() as client:
        assert [f.id for f in await client.features(Product.from_wire(product))] == [4]
        flat.respond(400, json={"error": "bad"})
        with pytest.raises(RequestRejectedError):  # only a 422 means "ask the sections"
            await client.features(Product.from_wire(product))


async def test_features_422_learns_the_sections_the_product_gained(api: respx.MockRouter) -> None:
    # BUG: the 422 says the product gained sections since it was read, but the fallback asks
    # the sections of that stale Product (here only the default one) and misses the new ones.
    fresh = {"id": 5, "sections": [{"id": 10}, {"id": 11}], "sections_with_default": [{"id": 99}]}
    api.get("products/5").respond(200, json={"product": fresh})
    api.get("products/5/features").respond(422, json={"error": "product has sections"})
    for section, features in ((99, []), (10, [{"id": 1}]), (11, [{"id": 2}])):
        api.get(f"products/5/sections/{section}/features").respond(200, json={"features": features})
    stale = Product.from_wire({"id": 5, "sections_with_default": [{"id": 99}]})
    async with make_client() as client:
        assert sorted(f.id for f in await client.features(stale)) == [1, 2]


@pytest.mark.parametrize(
    ("answer", "state"),
    [
        (httpx.Response(200, json={"reject_reasons": []}), "healthy"),
        (httpx.Response(401), "unauthorized"),
        (httpx.Response(403), "unauthorized"),
        (httpx.Response(429), "rate_limited"),
        (httpx.Response(503), "unreachable"),
        (httpx.ConnectError("refused"), "unreachable"),
    ],
)
async def test_check_health(api: respx.MockRouter, answer: Any, state: str) -> None:
    route = api.get("bugs/reject_reasons").mock(side_effect=[answer])
    async with make_client() as client:
        report = await client.check_health()
    assert (report.state, route.call_count) == (state, 1)
    assert report.latency_ms is not None
    assert report.latency_ms >= 0


PRODUCTS = {"products": [{"id": 1, "name": "Shop"}]}


async def test_a_prefetched_product_list_is_taken_once_and_counted_when_taken(
    api: respx.MockRouter,
) -> None:
    route = api.get("products").mock(return_value=httpx.Response(200, json=PRODUCTS))
    async with make_client() as client:
        client.prefetch_products()
        client.prefetch_products()  # already on its way: not asked twice
        await settle()
        assert route.call_count == 1
        assert client.metrics.requests == 0  # not yet taken
        products = await client.products()
        assert client.metrics.requests == 1
        assert [p.id for p in products] == [1]
        await client.products()  # the next call asks again
    assert route.call_count == 2
    assert client.metrics.requests == 2


async def test_a_prefetch_too_old_or_never_taken_is_dropped_and_still_counted(
    api: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    route = api.get("products").mock(return_value=httpx.Response(200, json=PRODUCTS))
    async with make_client() as client:
        monkeypatch.setattr(client_module, "PREFETCH_SECONDS", -1.0)
        client.prefetch_products()
        await settle()
        await client.products()  # the prefetched answer is too old: asked again
        assert route.call_count == 2
        assert client.metrics.requests == 2
        client.prefetch_products()
        await settle()
    assert route.call_count == 3
    assert client.metrics.requests == 3  # the one never taken is counted at close


async def test_a_failed_prefetch_fails_the_products_call(api: respx.MockRouter) -> None:
    api.get("products").mock(return_value=httpx.Response(401))
    async with make_client() as client:
        client.prefetch_products()
        with pytest.raises(AuthError):
            await client.products()
        assert client.metrics.statuses[401] == 1
