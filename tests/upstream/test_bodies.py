"""Reading answers: JSON, the documented shape (else a bad response), never the server's text."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx

from testio_mirror.upstream.bodies import body_kind, decode_json, member
from testio_mirror.upstream.errors import BadResponseError
from tests.helpers.fake_upstream import make_client


async def test_non_json_200_is_a_bad_response_not_retried(api: respx.MockRouter) -> None:
    route = api.get("products").respond(
        200, text="<html>login SECRET</html>", headers={"content-type": "text/html"}
    )
    async with make_client() as client:
        with pytest.raises(BadResponseError, match="not JSON") as info:
            await client.products()
    assert "TESTIO_CUSTOMER_API_BASE_URL" in str(info.value)
    assert "an HTML page" in str(info.value)
    assert "login" not in str(info.value)  # none of the server's text
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


def test_member_answers_the_key_of_the_kind_asked_for() -> None:
    assert member({"bugs": [1], "x": 2}, "bugs", list, "GET", "bugs") == [1]
    with pytest.raises(
        BadResponseError, match=r"GET bugs: .* list 'bugs', got an object without it"
    ) as info:
        member({"SECRET": {}}, "bugs", list, "GET", "bugs")
    assert info.value.request == "GET bugs"
    assert "SECRET" not in str(info.value)  # the keys found are the server's text


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [
        ("text/html; charset=utf-8", "an HTML page"),
        ("TEXT/PLAIN", "plain text"),
        ("application/json", "broken JSON"),
        ("text/csv", "text"),
        ("application/x-SECRET", "a body of another type"),
        ("", "a body without a content type"),
    ],
)
def test_a_body_is_named_by_its_kind_in_our_words(content_type: str, kind: str) -> None:
    headers = {"content-type": content_type} if content_type else {}
    assert body_kind(httpx.Response(200, content=b"x", headers=headers)) == kind


def test_decode_json_falls_back_to_httpx_for_other_encodings() -> None:
    body = '{"name": "Größe"}'.encode("utf-16")
    response = httpx.Response(200, content=body, headers={"content-type": "application/json"})
    assert decode_json(response) == {"name": "Größe"}
