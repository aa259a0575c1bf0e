"""The sandbox's Customer API v2 over real HTTP: shapes, auth (faults come before it), paging,
filters, triage, errors, the request log."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from testio_mirror.sandbox import DatasetSpec, FaultRule, SandboxConfig, SandboxKnobs, SandboxServer
from testio_mirror.sandbox.faults import RequestRecord
from tests.conftest import SMALL, SandboxFactory
from tests.helpers.polling import wait_for
from tests.helpers.sandbox_http import ok

JSON = dict[str, Any]
SECTION_PRODUCT = 101  # the one product with sections in the small set
PLAIN_PRODUCT = 102
THOUSAND = DatasetSpec(products=1, section_products=0, tests_per_product=1000, bugs_per_test=0)


@pytest.fixture(scope="module")
def shared() -> Iterator[SandboxServer]:
    """The small set, shared by the tests that only read (saves a server start per test)."""
    with SandboxServer(SandboxConfig(dataset=SMALL)) as server:
        yield server


@pytest.fixture(scope="module")
def thousand() -> Iterator[SandboxServer]:
    """A read-only sandbox holding one product of 1,000 tests."""
    with SandboxServer(SandboxConfig(dataset=THOUSAND)) as server:
        yield server


@pytest.fixture
def reader(shared: SandboxServer) -> Iterator[httpx.Client]:
    with client(shared) as api:
        yield api


def client(sandbox: SandboxServer, headers: dict[str, str] | None = None) -> httpx.Client:
    auth = sandbox.auth_headers if headers is None else headers
    return httpx.Client(base_url=sandbox.base_url + "/", headers=auth, timeout=10.0)


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
    found = bugs(api, filter_product_ids=PLAIN_PRODUCT)
    return next(b for b in found if all(b.get(k) != v for k, v in unlike.items()))


def logged(sandbox: SandboxServer, count: int) -> list[RequestRecord]:
    """The request log once it holds ``count`` records (or what it holds after 2 s)."""
    wait_for(lambda: len(sandbox.requests) >= count, seconds=2.0)
    return sandbox.requests.records()


def feature_ids(api: httpx.Client, path: str) -> list[int]:
    return ids(ok(api.get(path), "features"))


# -- products ------------------------------------------------------------------------------


def test_products_listing_shape(reader: httpx.Client) -> None:
    products = ok(reader.get("products"), "products")
    assert ids(products) == [101, 102, 103]
    for product in products:
        assert product["name"]
        assert {type(product[k]) for k in ("name", "type")} == {str}
        assert product["sections_with_default"][0]["id"] == product["default_section_id"]
        assert product["sections_with_default"][1:] == product["sections"]
    assert [len(p["sections"]) for p in products] == [2, 0, 0]


@pytest.mark.parametrize("presented", [None, "Token wrong-token", "Bearer {token}"])
def test_api_needs_the_token_scheme(sandbox: SandboxServer, presented: str | None) -> None:
    headers = {} if presented is None else {"Authorization": presented.format(token=sandbox.token)}
    with client(sandbox, headers) as anonymous:
        error(anonymous.get("products"), 401)
        error(anonymous.get("bugs/1000004"), 401)
    assert [r.status for r in logged(sandbox, 2)] == [401, 401]


def test_product_detail_and_unknown_product(reader: httpx.Client) -> None:
    product = ok(reader.get("products/102"), "product")
    assert product == ok(reader.get("products"), "products")[1]
    assert "not found" in error(reader.get("products/999"), 404)


# -- features, user stories, environments --------------------------------------------------


def test_features_of_product_without_sections(reader: httpx.Client) -> None:
    features = ok(reader.get(f"products/{PLAIN_PRODUCT}/features"), "features")
    assert len(features) == 6
    assert all({"id", "title", "user_stories"} <= f.keys() for f in features)
    assert "sections" in error(reader.get(f"products/{SECTION_PRODUCT}/features"), 422)
    error(reader.get("products/999/features"), 404)


def test_section_features_cover_all_features_with_overlap(shared: SandboxServer) -> None:
    with client(shared) as api:
        sections = ok(api.get(f"products/{SECTION_PRODUCT}"), "product")["sections"]
        per_section = [
            feature_ids(api, f"products/{SECTION_PRODUCT}/sections/{s['id']}/features")
            for s in sections
        ]
    everything = set(shared.world.snapshot()["features"][SECTION_PRODUCT])
    assert len(per_section) == 2
    assert set().union(*per_section) == everything
    assert set(per_section[0]) & set(per_section[1])
    assert all(len(set(section)) == len(section) for section in per_section)


def test_unknown_section_is_404(reader: httpx.Client) -> None:
    error(reader.get(f"products/{SECTION_PRODUCT}/sections/9999/features"), 404)
    other = ok(reader.get(f"products/{PLAIN_PRODUCT}"), "product")["default_section_id"]
    error(reader.get(f"products/{SECTION_PRODUCT}/sections/{other}/features"), 404)


def test_default_section_of_plain_product_answers_all_features(reader: httpx.Client) -> None:
    default = ok(reader.get(f"products/{PLAIN_PRODUCT}"), "product")["default_section_id"]
    in_section = feature_ids(reader, f"products/{PLAIN_PRODUCT}/sections/{default}/features")
    assert in_section == feature_ids(reader, f"products/{PLAIN_PRODUCT}/features")


def test_user_stories_of_plain_product(reader: httpx.Client) -> None:
    features = ok(reader.get(f"products/{PLAIN_PRODUCT}/features"), "features")
    stories = ok(reader.get(f"products/{PLAIN_PRODUCT}/user_stories"), "user_stories")
    assert len(stories) == sum(len(f["user_stories"]) for f in features) > 0
    assert {s["title"] for s in stories} <= {t for f in features for t in f["user_stories"]}
    assert {s["feature_id"] for s in stories} <= set(ids(features))


def test_user_stories_of_section_product_need_a_section(reader: httpx.Client) -> None:
    path = f"products/{SECTION_PRODUCT}/user_stories"
    assert "section_id" in error(reader.get(path), 422)
    error(reader.get(path, params={"section_id": 9999}), 404)
    error(reader.get(path, params={"section_id": "x"}), 422)
    for section in ok(reader.get(f"products/{SECTION_PRODUCT}"), "product")["sections"]:
        sid = section["id"]
        allowed = feature_ids(reader, f"products/{SECTION_PRODUCT}/sections/{sid}/features")
        stories = ok(reader.get(path, params={"section_id": sid}), "user_stories")
        assert stories
        assert {s["feature_id"] for s in stories} <= set(allowed)
        assert {s["section_id"] for s in stories} == {sid}


def test_test_environments(reader: httpx.Client) -> None:
    environments = ok(
        reader.get(f"products/{PLAIN_PRODUCT}/test_environments"), "test_environments"
    )
    assert all({"id", "title", "url"} <= e.keys() for e in environments)
    assert environments[0]["url"].startswith("https://")
    error(reader.get("products/999/test_environments"), 404)


# -- exploratory tests: paging -------------------------------------------------------------


def test_thousand_tests_page_in_forty_full_pages(thousand: SandboxServer) -> None:
    with client(thousand) as api:
        pages = [list_tests(api, 101, page=n, per_page=25) for n in range(1, 42)]
    assert [len(p) for p in pages[:40]] == [25] * 40
    assert pages[40] == []
    listed = [test for page in pages for test in page]
    ends = [when(test["end_at"]) for test in listed]
    assert all(a >= b for a, b in itertools.pairwise(ends))
    assert len(set(ids(listed))) == 1000
    assert set(ids(listed)) == set(thousand.world.snapshot()["tests"])


def test_last_page_is_short(reader: httpx.Client) -> None:
    pages = [list_tests(reader, PLAIN_PRODUCT, page=n, per_page=25) for n in (1, 2, 3)]
    assert [len(p) for p in pages] == [25, 5, 0]
    assert len(set(ids(pages[0] + pages[1]))) == 30


def test_listing_without_page_answers_newest_unpaged_limit(thousand: SandboxServer) -> None:
    assert thousand.knobs.unpaged_limit == 150
    with client(thousand) as api:
        unpaged = list_tests(api, 101)
        with_per_page = list_tests(api, 101, per_page=10)
        paged = list_tests(api, 101, page=1, per_page=100) + list_tests(
            api, 101, page=2, per_page=100
        )
    assert len(unpaged) == 150
    assert ids(with_per_page) == ids(unpaged)
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
def test_bad_paging_parameters_are_422(reader: httpx.Client, query: dict[str, Any]) -> None:
    response = reader.get(f"products/{PLAIN_PRODUCT}/exploratory_tests", params=query)
    assert "must be" in error(response, 422)


def test_listing_leaves_out_product_detail_has_it(reader: httpx.Client) -> None:
    listed = list_tests(reader, PLAIN_PRODUCT, page=1, per_page=5)
    assert all("product" not in test for test in listed)
    detail = ok(reader.get(f"exploratory_tests/{listed[0]['id']}"), "exploratory_test")
    assert detail["product"]["id"] == PLAIN_PRODUCT
    assert {k: v for k, v in detail.items() if k != "product"} == listed[0]
    error(reader.get("exploratory_tests/42"), 404)
    error(reader.get("products/999/exploratory_tests"), 404)


# -- bugs: filters -------------------------------------------------------------------------


def test_bugs_by_test_cycle_ids(reader: httpx.Client) -> None:
    chosen = ids(list_tests(reader, PLAIN_PRODUCT, page=1, per_page=3))
    found = bugs(reader, filter_test_cycle_ids=",".join(map(str, chosen)))
    assert len(found) == 3 * 3
    assert {b["test"]["id"] for b in found} == set(chosen)
    single = bugs(reader, filter_test_cycle_ids=str(chosen[0]))
    assert {b["test"]["id"] for b in single} == {chosen[0]}


def test_bugs_of_a_product_come_in_one_unpaged_response(reader: httpx.Client) -> None:
    for product in (101, 102, 103):
        found = bugs(reader, filter_product_ids=product)
        assert len(found) == 30 * 3
        assert len(set(ids(found))) == len(found)
        assert {b["product"]["id"] for b in found} == {product}
    assert len(bugs(reader, filter_product_ids="101,103")) == 180


def test_bugs_by_section(reader: httpx.Client) -> None:
    listed = list_tests(reader, SECTION_PRODUCT, page=1, per_page=100)
    for section_id in (5001, 5002):
        in_section = {t["id"] for t in listed if t["section"]["id"] == section_id}
        found = bugs(reader, filter_section_ids=section_id)
        assert in_section
        assert {b["test"]["id"] for b in found} == in_section
        assert len(found) == 3 * len(in_section)
    default = ok(reader.get(f"products/{PLAIN_PRODUCT}"), "product")["default_section_id"]
    assert len(bugs(reader, filter_section_ids=default)) == 90


def test_bug_filters_intersect(reader: httpx.Client) -> None:
    mine = ids(list_tests(reader, SECTION_PRODUCT, page=1, per_page=2))
    theirs = ids(list_tests(reader, PLAIN_PRODUCT, page=1, per_page=2))
    cycles = ",".join(map(str, mine + theirs))
    both = bugs(reader, filter_test_cycle_ids=cycles, filter_product_ids=SECTION_PRODUCT)
    assert {b["test"]["id"] for b in both} == set(mine)
    assert bugs(reader, filter_product_ids=PLAIN_PRODUCT, filter_section_ids=5001) == []
    section = bugs(reader, filter_product_ids=SECTION_PRODUCT, filter_section_ids=5001)
    assert section == bugs(reader, filter_section_ids=5001)


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
def test_bad_bug_queries_are_422(reader: httpx.Client, query: dict[str, str]) -> None:
    error(reader.get("bugs", params=query), 422)


def test_bug_detail_and_reject_reasons(reader: httpx.Client) -> None:
    listed = first_bug(reader)
    assert bug(reader, listed["id"]) == listed
    error(reader.get("bugs/999999"), 404)
    reasons = ok(reader.get("bugs/reject_reasons"), "reject_reasons")
    assert reasons
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
def test_reject_without_valid_reason_changes_nothing(api: httpx.Client, body: JSON | None) -> None:
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
def test_mark_actions(
    sandbox: SandboxServer, api: httpx.Client, action: str, field: str, unlike: JSON
) -> None:
    target = first_bug(api, **unlike)
    assert not target.get(field)
    answered = ok(api.put(f"bugs/{target['id']}/{action}"), "bug")
    after = bug(api, target["id"])
    assert answered == after
    if field == "known":
        assert after[field] is True
    else:  # stamped with the account's clock, which stands at the anchor until it evolves
        assert when(after[field]) == sandbox.config.dataset.anchor
    assert {k: v for k, v in after.items() if k != field} == {
        k: v for k, v in target.items() if k != field
    }


def test_unknown_action_or_bug_is_404(api: httpx.Client) -> None:
    target = first_bug(api)
    assert "action" in error(api.put(f"bugs/{target['id']}/delete"), 404)
    error(api.put("bugs/999999/accept"), 404)
    assert bug(api, target["id"]) == target


# -- errors and the request log ------------------------------------------------------------


def test_unknown_path_is_json_404(reader: httpx.Client) -> None:
    error(reader.get("no/such/thing"), 404)
    error(reader.get("products/abc"), 404)


def test_wrong_method_is_405_with_allow(reader: httpx.Client) -> None:
    response = reader.post("products", json={})
    error(response, 405)
    assert "GET" in response.headers.get("allow", "")


def test_faults_apply_before_auth(sandbox: SandboxServer) -> None:
    sandbox.faults.add(FaultRule(kind="rate_limit", path="products", retry_after="1"))
    with httpx.Client(base_url=sandbox.base_url + "/", timeout=10.0) as anonymous:
        first = anonymous.get("products")
        second = anonymous.get("products")
    assert first.status_code == 429
    assert first.headers["retry-after"] == "1"
    assert second.status_code == 401
    assert wait_for(lambda: len(sandbox.requests) == 2)
    assert [(r.status, r.fault) for r in sandbox.requests.records()] == [
        (429, "rate_limit"),
        (401, None),
    ]


def test_request_log_records_api_requests(sandbox: SandboxServer, api: httpx.Client) -> None:
    sandbox.requests.clear()
    list_tests(api, SECTION_PRODUCT, page=2, per_page=5)
    api.get("products/999")
    api.put("bugs/1000004/accept")
    admin = sandbox.base_url.replace("/customer/v2", "/_sandbox/health")
    assert httpx.get(admin, headers=sandbox.auth_headers).status_code == 200
    records = logged(sandbox, 3)
    assert [(r.method, r.path, r.query, r.status) for r in records] == [
        ("GET", f"products/{SECTION_PRODUCT}/exploratory_tests", "page=2&per_page=5", 200),
        ("GET", "products/999", "", 404),
        ("PUT", "bugs/1000004/accept", "", 200),
    ]
    assert all(isinstance(r.ms, float) and r.ms >= 0 for r in records)
    assert all(r.fault is None for r in records)
    assert len(sandbox.requests.records("products/*")) == 2


def test_request_is_logged_before_its_answer(sandbox: SandboxServer, api: httpx.Client) -> None:
    for sent in range(1, 31):
        bugs(api, filter_product_ids=SECTION_PRODUCT)
        assert len(sandbox.requests) == sent


def test_small_responses_are_not_delayed(reader: httpx.Client) -> None:
    # Starlette sends headers and body in two writes; without TCP_NODELAY on the accepted
    # connection, Nagle + the client's delayed ACK hold every small body back ~40 ms.
    reader.get("products")
    started = time.perf_counter()
    for _ in range(20):
        ok(reader.get("products"), "products")
    assert time.perf_counter() - started < 0.25
