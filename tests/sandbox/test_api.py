"""The sandbox's Customer API v2 over real HTTP: shapes, auth, paging, bug filters, triage, errors."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from testio_mirror.sandbox import DatasetSpec, SandboxKnobs, SandboxServer
from tests.conftest import SandboxFactory

JSON = dict[str, Any]
SECTION_PRODUCT = 101  # the one product with sections in the small set
PLAIN_PRODUCT = 102
THOUSAND = DatasetSpec(products=1, section_products=0, tests_per_product=1000, bugs_per_test=0)


def client(sandbox: SandboxServer, headers: dict[str, str] | None = None) -> httpx.Client:
    auth = sandbox.auth_headers if headers is None else headers
    return httpx.Client(base_url=sandbox.base_url + "/", headers=auth, timeout=10.0)


def ok(response: httpx.Response, key: str) -> Any:
    assert response.status_code == 200, response.text
    return response.json()[key]


def error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert isinstance(message, str)
    assert message
    return message


def when(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert moment.tzinfo is not None
    return moment


def ids(items: list[JSON]) -> list[int]:
    return [item["id"] for item in items]


def list_tests(api: httpx.Client, product: int, **params: Any) -> list[JSON]:
    return ok(api.get(f"products/{product}/exploratory_tests", params=params), "exploratory_tests")


def bugs(api: httpx.Client, **params: Any) -> list[JSON]:
    return ok(api.get("bugs", params=params), "bugs")


def bug(api: httpx.Client, bug_id: int) -> JSON:
    return ok(api.get(f"bugs/{bug_id}"), "bug")


def first_bug(api: httpx.Client, **unlike: Any) -> JSON:
    """The first bug of the plain product whose fields differ from every given value."""
    found = [b for b in bugs(api, filter_product_ids=PLAIN_PRODUCT) if not _matches(b, unlike)]
    assert found
    return found[0]


def _matches(item: JSON, values: dict[str, Any]) -> bool:
    return any(item.get(key) == value for key, value in values.items())


def feature_ids(api: httpx.Client, path: str) -> list[int]:
    return ids(ok(api.get(path), "features"))


# -- products ------------------------------------------------------------------------------


def test_products_listing_shape(api: httpx.Client) -> None:
    products = ok(api.get("products"), "products")
    assert ids(products) == [101, 102, 103]
    for product in products:
        assert isinstance(product["name"], str)
        assert product["name"]
        assert isinstance(product["type"], str)
        assert isinstance(product["sections"], list)
        default = product["sections_with_default"][0]
        assert default["id"] == product["default_section_id"]
        assert product["sections_with_default"][1:] == product["sections"]
    assert [len(p["sections"]) for p in products] == [2, 0, 0]


@pytest.mark.parametrize("presented", [None, "Token wrong-token", "Bearer {token}"])
def test_api_needs_the_token_scheme(sandbox: SandboxServer, presented: str | None) -> None:
    headers = {} if presented is None else {"Authorization": presented.format(token=sandbox.token)}
    with client(sandbox, headers) as anonymous:
        error(anonymous.get("products"), 401)
        error(anonymous.get("bugs/1000004"), 401)
    assert [r.status for r in sandbox.requests.records()] == [401, 401]


def test_product_detail_and_unknown_product(api: httpx.Client) -> None:
    product = ok(api.get("products/102"), "product")
    assert product == ok(api.get("products"), "products")[1]
    assert "not found" in error(api.get("products/999"), 404)


# -- features, user stories, environments --------------------------------------------------


def test_features_of_product_without_sections(api: httpx.Client) -> None:
    features = ok(api.get(f"products/{PLAIN_PRODUCT}/features"), "features")
    assert len(features) == 6
    assert all({"id", "title", "user_stories"} <= f.keys() for f in features)
    assert "sections" in error(api.get(f"products/{SECTION_PRODUCT}/features"), 422)
    error(api.get("products/999/features"), 404)


def test_section_features_cover_all_features_with_overlap(sandbox: SandboxServer) -> None:
    with client(sandbox) as api:
        sections = ok(api.get(f"products/{SECTION_PRODUCT}"), "product")["sections"]
        per_section = [
            feature_ids(api, f"products/{SECTION_PRODUCT}/sections/{s['id']}/features")
            for s in sections
        ]
    everything = set(sandbox.world.snapshot()["features"][SECTION_PRODUCT])
    assert len(per_section) == 2
    assert set().union(*per_section) == everything
    assert set(per_section[0]) & set(per_section[1])
    assert all(len(set(section)) == len(section) for section in per_section)


def test_unknown_section_is_404(api: httpx.Client) -> None:
    error(api.get(f"products/{SECTION_PRODUCT}/sections/9999/features"), 404)
    other = ok(api.get(f"products/{PLAIN_PRODUCT}"), "product")["default_section_id"]
    error(api.get(f"products/{SECTION_PRODUCT}/sections/{other}/features"), 404)


def test_default_section_of_plain_product_answers_all_features(api: httpx.Client) -> None:
    default = ok(api.get(f"products/{PLAIN_PRODUCT}"), "product")["default_section_id"]
    in_section = feature_ids(api, f"products/{PLAIN_PRODUCT}/sections/{default}/features")
    assert in_section == feature_ids(api, f"products/{PLAIN_PRODUCT}/features")


def test_user_stories_of_plain_product(api: httpx.Client) -> None:
    features = ok(api.get(f"products/{PLAIN_PRODUCT}/features"), "features")
    stories = ok(api.get(f"products/{PLAIN_PRODUCT}/user_stories"), "user_stories")
    assert len(stories) == sum(len(f["user_stories"]) for f in features) > 0
    assert {s["title"] for s in stories} <= {t for f in features for t in f["user_stories"]}
    assert {s["feature_id"] for s in stories} <= set(ids(features))


def test_user_stories_of_section_product_need_a_section(api: httpx.Client) -> None:
    path = f"products/{SECTION_PRODUCT}/user_stories"
    assert "section_id" in error(api.get(path), 422)
    error(api.get(path, params={"section_id": 9999}), 404)
    error(api.get(path, params={"section_id": "x"}), 422)
    for section in ok(api.get(f"products/{SECTION_PRODUCT}"), "product")["sections"]:
        sid = section["id"]
        allowed = feature_ids(api, f"products/{SECTION_PRODUCT}/sections/{sid}/features")
        stories = ok(api.get(path, params={"section_id": sid}), "user_stories")
        assert stories
        assert {s["feature_id"] for s in stories} <= set(allowed)
        assert {s["section_id"] for s in stories} == {sid}


def test_test_environments(api: httpx.Client) -> None:
    environments = ok(api.get(f"products/{PLAIN_PRODUCT}/test_environments"), "test_environments")
    assert len(environments) >= 1
    assert all({"id", "title", "url"} <= e.keys() for e in environments)
    assert environments[0]["url"].startswith("https://")
    error(api.get("products/999/test_environments"), 404)


# -- exploratory tests: paging -------------------------------------------------------------


def test_thousand_tests_page_in_forty_full_pages(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox(dataset=THOUSAND)
    with client(sandbox) as api:
        pages = [list_tests(api, 101, page=n, per_page=25) for n in range(1, 42)]
    assert [len(p) for p in pages[:40]] == [25] * 40
    assert pages[40] == []
    listed = [test for page in pages for test in page]
    ends = [when(test["end_at"]) for test in listed]
    assert all(a >= b for a, b in zip(ends, ends[1:], strict=False))
    assert len(set(ids(listed))) == 1000
    assert set(ids(listed)) == set(sandbox.world.snapshot()["tests"])


def test_last_page_is_short(api: httpx.Client) -> None:
    pages = [list_tests(api, PLAIN_PRODUCT, page=n, per_page=25) for n in (1, 2, 3)]
    assert [len(p) for p in pages] == [25, 5, 0]
    assert len(set(ids(pages[0] + pages[1]))) == 30


def test_listing_without_page_answers_newest_unpaged_limit(make_sandbox: SandboxFactory) -> None:
    spec = DatasetSpec(products=1, section_products=0, tests_per_product=200, bugs_per_test=0)
    with client(make_sandbox(dataset=spec)) as api:
        unpaged = list_tests(api, 101)
        paged = list_tests(api, 101, page=1, per_page=100) + list_tests(
            api, 101, page=2, per_page=100
        )
    assert len(unpaged) == 150
    assert len(paged) == 200
    assert ids(unpaged) == ids(paged[:150])
    oldest_listed = min(when(t["end_at"]) for t in unpaged)
    assert all(when(t["end_at"]) <= oldest_listed for t in paged[150:])


def test_per_page_above_the_maximum_is_capped(make_sandbox: SandboxFactory) -> None:
    with client(make_sandbox(knobs=SandboxKnobs(max_per_page=10))) as api:
        first = list_tests(api, PLAIN_PRODUCT, page=1, per_page=25)
        second = list_tests(api, PLAIN_PRODUCT, page=2, per_page=25)
        fourth = list_tests(api, PLAIN_PRODUCT, page=4, per_page=25)
    assert len(first) == len(second) == 10
    assert not set(ids(first)) & set(ids(second))
    assert fourth == []


def test_ignore_paging_answers_every_test(make_sandbox: SandboxFactory) -> None:
    with client(make_sandbox(knobs=SandboxKnobs(ignore_paging=True))) as api:
        answers = [
            list_tests(api, PLAIN_PRODUCT, page=1, per_page=5),
            list_tests(api, PLAIN_PRODUCT, page=3, per_page=5),
            list_tests(api, PLAIN_PRODUCT, page=99),
            list_tests(api, PLAIN_PRODUCT),
        ]
    assert [len(a) for a in answers] == [30] * 4
    assert all(ids(a) == ids(answers[0]) for a in answers)


@pytest.mark.parametrize(
    "query", [{"page": 0}, {"page": -1}, {"per_page": "abc"}, {"page": 1, "per_page": 0}]
)
def test_bad_paging_parameters_are_422(api: httpx.Client, query: dict[str, Any]) -> None:
    response = api.get(f"products/{PLAIN_PRODUCT}/exploratory_tests", params=query)
    assert "must be" in error(response, 422)


def test_listing_leaves_out_product_detail_has_it(api: httpx.Client) -> None:
    listed = list_tests(api, PLAIN_PRODUCT, page=1, per_page=5)
    assert all("product" not in test for test in listed)
    detail = ok(api.get(f"exploratory_tests/{listed[0]['id']}"), "exploratory_test")
    assert detail["product"]["id"] == PLAIN_PRODUCT
    assert {k: v for k, v in detail.items() if k != "product"} == listed[0]
    error(api.get("exploratory_tests/42"), 404)
    error(api.get("products/999/exploratory_tests"), 404)


# -- bugs: filters -------------------------------------------------------------------------


def test_bugs_by_test_cycle_ids(api: httpx.Client) -> None:
    chosen = ids(list_tests(api, PLAIN_PRODUCT, page=1, per_page=3))
    found = bugs(api, filter_test_cycle_ids=",".join(map(str, chosen)))
    assert len(found) == 3 * 3
    assert {b["test"]["id"] for b in found} == set(chosen)
    single = bugs(api, filter_test_cycle_ids=str(chosen[0]))
    assert {b["test"]["id"] for b in single} == {chosen[0]}


def test_bugs_of_a_product_come_in_one_unpaged_response(api: httpx.Client) -> None:
    for product in (101, 102, 103):
        found = bugs(api, filter_product_ids=product)
        assert len(found) == 30 * 3
        assert len(set(ids(found))) == len(found)
        assert {b["product"]["id"] for b in found} == {product}
    assert len(bugs(api, filter_product_ids="101,103")) == 180


def test_bugs_by_section(api: httpx.Client) -> None:
    listed = list_tests(api, SECTION_PRODUCT, page=1, per_page=100)
    for section_id in (5001, 5002):
        in_section = {t["id"] for t in listed if t["section"]["id"] == section_id}
        found = bugs(api, filter_section_ids=section_id)
        assert in_section
        assert {b["test"]["id"] for b in found} == in_section
        assert len(found) == 3 * len(in_section)
    default = ok(api.get(f"products/{PLAIN_PRODUCT}"), "product")["default_section_id"]
    assert len(bugs(api, filter_section_ids=default)) == 90


def test_bug_filters_intersect(api: httpx.Client) -> None:
    mine = ids(list_tests(api, SECTION_PRODUCT, page=1, per_page=2))
    theirs = ids(list_tests(api, PLAIN_PRODUCT, page=1, per_page=2))
    cycles = ",".join(map(str, mine + theirs))
    both = bugs(api, filter_test_cycle_ids=cycles, filter_product_ids=SECTION_PRODUCT)
    assert {b["test"]["id"] for b in both} == set(mine)
    assert bugs(api, filter_product_ids=PLAIN_PRODUCT, filter_section_ids=5001) == []
    section = bugs(api, filter_product_ids=SECTION_PRODUCT, filter_section_ids=5001)
    assert section == bugs(api, filter_section_ids=5001)


def test_export_status_follows_mark_as_exported(api: httpx.Client) -> None:
    assert bugs(api, filter_product_ids=PLAIN_PRODUCT, export_status="exported") == []
    target = first_bug(api)["id"]
    assert ok(api.put(f"bugs/{target}/mark_as_exported"), "bug")["exported_at"]
    exported = bugs(api, filter_product_ids=PLAIN_PRODUCT, export_status="exported")
    rest = bugs(api, filter_product_ids=PLAIN_PRODUCT, export_status="not_exported")
    assert ids(exported) == [target]
    assert target not in ids(rest)
    assert len(rest) == 89


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"export_status": "exported"},
        {"filter_test_cycle_ids": "a,b"},
        {"filter_product_ids": "101,x"},
        {"filter_product_ids": "101", "export_status": "maybe"},
    ],
)
def test_bad_bug_queries_are_422(api: httpx.Client, query: dict[str, str]) -> None:
    error(api.get("bugs", params=query), 422)


def test_bug_detail_and_reject_reasons(api: httpx.Client) -> None:
    listed = first_bug(api)
    assert bug(api, listed["id"]) == listed
    error(api.get("bugs/999999"), 404)
    reasons = ok(api.get("bugs/reject_reasons"), "reject_reasons")
    assert len(reasons) >= 1
    for reason in reasons:
        assert set(reason) == {"key", "name", "default_comment"}
        assert all(isinstance(value, str) and value for value in reason.values())


# -- bugs: triage --------------------------------------------------------------------------


def test_accept(api: httpx.Client) -> None:
    target = first_bug(api, status="accepted")
    answered = ok(api.put(f"bugs/{target['id']}/accept"), "bug")
    assert answered["status"] == "accepted"
    assert bug(api, target["id"])["status"] == "accepted"


@pytest.mark.parametrize("encoding", ["json", "data"])
def test_reject_with_reason_adds_comment(api: httpx.Client, encoding: str) -> None:
    reason = ok(api.get("bugs/reject_reasons"), "reject_reasons")[-1]
    target = first_bug(api, status="rejected")
    body = {encoding: {"reason": reason["key"], "comment": "x"}}
    answered = ok(api.put(f"bugs/{target['id']}/reject", **body), "bug")
    after = bug(api, target["id"])
    assert answered == after
    assert after["status"] == "rejected"
    assert len(after["comments"]) == len(target["comments"]) + 1
    assert after["comments"][-1]["body"].startswith(reason["default_comment"])
    assert after["comments"][-1]["body"].endswith("x")


@pytest.mark.parametrize(
    "body", [{"reason": "no_such_reason", "comment": "x"}, {"comment": "x"}, None]
)
def test_reject_without_valid_reason_leaves_bug_unchanged(
    api: httpx.Client, body: JSON | None
) -> None:
    target = first_bug(api, status="rejected")
    error(api.put(f"bugs/{target['id']}/reject", json=body), 422)
    assert bug(api, target["id"]) == target


@pytest.mark.parametrize(
    ("action", "field", "unlike"),
    [
        ("mark_as_known", "known", {"known": True}),
        ("mark_as_fixed", "fixed_at", {}),
        ("mark_as_exported", "exported_at", {}),
    ],
)
def test_mark_actions(api: httpx.Client, action: str, field: str, unlike: JSON) -> None:
    target = first_bug(api, **unlike)
    assert not target.get(field)
    answered = ok(api.put(f"bugs/{target['id']}/{action}"), "bug")
    after = bug(api, target["id"])
    assert answered == after
    if field == "known":
        assert after[field] is True
    else:
        assert when(after[field]) == when(after[field])
    assert {k: v for k, v in after.items() if k != field} == {
        k: v for k, v in target.items() if k != field
    }


def test_unknown_action_or_bug_is_404(api: httpx.Client) -> None:
    target = first_bug(api)
    assert "action" in error(api.put(f"bugs/{target['id']}/delete"), 404)
    error(api.put("bugs/999999/accept"), 404)
    assert bug(api, target["id"]) == target


# -- errors and the request log ------------------------------------------------------------


def test_unknown_path_is_json_404(api: httpx.Client) -> None:
    error(api.get("no/such/thing"), 404)
    error(api.get("products/abc"), 404)


def test_wrong_method_is_405_with_allow(api: httpx.Client) -> None:
    response = api.post("products", json={})
    error(response, 405)
    assert "GET" in response.headers.get("allow", "")


def test_request_log_records_api_requests(sandbox: SandboxServer, api: httpx.Client) -> None:
    sandbox.requests.clear()
    list_tests(api, SECTION_PRODUCT, page=2, per_page=5)
    api.get("products/999")
    api.put("bugs/1000004/accept")
    admin = sandbox.base_url.replace("/customer/v2", "/_sandbox/health")
    assert httpx.get(admin, headers=sandbox.auth_headers).status_code == 200
    records = sandbox.requests.records()
    assert [(r.method, r.path, r.query, r.status) for r in records] == [
        ("GET", f"products/{SECTION_PRODUCT}/exploratory_tests", "page=2&per_page=5", 200),
        ("GET", "products/999", "", 404),
        ("PUT", "bugs/1000004/accept", "", 200),
    ]
    assert all(isinstance(r.ms, float) and r.ms >= 0 for r in records)
    assert all(r.fault is None for r in records)
    assert len(sandbox.requests.records("products/*")) == 2
