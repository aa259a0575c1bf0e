"""Reading answers: JSON, the documented shape (else a bad response), the reason of a refusal."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx

from testio_mirror.upstream.bodies import decode_json, error_text, member
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


def scrub(text: str) -> str:
    return text.replace("SECRET", "[redacted]")


def test_member_answers_the_key_of_the_kind_asked_for() -> None:
    assert member({"bugs": [1], "x": 2}, "bugs", list, "GET", "bugs") == [1]
    with pytest.raises(
        BadResponseError, match=r"GET bugs: .* list 'bugs', got .* keys bug"
    ) as info:
        member({"bug": {}}, "bugs", list, "GET", "bugs")
    assert info.value.request == "GET bugs"


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (httpx.Response(422, json={"error": "per_page too large"}), "per_page too large"),
        (httpx.Response(422, json={"message": "SECRET is wrong"}), "[redacted] is wrong"),
        (httpx.Response(422, json=["a list"]), "['a list']"),
        (httpx.Response(400, text=""), "no reason given"),
        (httpx.Response(400, text="x" * 195 + "SECRET"), "x" * 195 + "[reda"),
    ],
)
def test_error_text_is_scrubbed_then_cut(response: httpx.Response, reason: str) -> None:
    assert error_text(response, scrub) == reason


def test_decode_json_falls_back_to_httpx_for_other_encodings() -> None:
    body = '{"name": "Größe"}'.encode("utf-16")
    response = httpx.Response(200, content=body, headers={"content-type": "application/json"})
    assert decode_json(response) == {"name": "Größe"}
