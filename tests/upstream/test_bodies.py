"""Reading answers: a body that is not JSON, or not of the documented shape, is a bad response."""

from __future__ import annotations

from typing import Any

import pytest
import respx

from testio_mirror.upstream.errors import BadResponseError
from tests.helpers.fake_upstream import make_client


async def test_non_json_200_is_a_bad_response_not_retried(api: respx.MockRouter) -> None:
    route = api.get("products").respond(200, text="<html>login</html>")
    async with make_client() as client:
        with pytest.raises(BadResponseError, match="not JSON") as info:
            await client.products()
    assert "TESTIO_CUSTOMER_API_BASE_URL" in str(info.value)
    assert (route.call_count, info.value.status) == (1, 200)


@pytest.mark.parametrize(
    "body", [{"products": {}}, [], {"items": []}, "products", {"products": [1]}]
)
async def test_json_of_the_wrong_shape_is_a_bad_response(api: respx.MockRouter, body: Any) -> None:
    route = api.get("products").respond(200, json=body)
    async with make_client() as client:
        with pytest.raises(BadResponseError):
            await client.products()
    assert route.call_count == 1
