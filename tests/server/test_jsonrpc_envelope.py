"""The envelope check both transports run before the SDK sees a message."""

from __future__ import annotations

import json

import pytest

from testio_mirror.server.jsonrpc_envelope import MAX_NESTING, vet_message

PARSE_ERROR, INVALID_REQUEST, INVALID_PARAMS = -32700, -32600, -32602


def _text(**members: object) -> str:
    return json.dumps({"jsonrpc": "2.0", **members})


@pytest.mark.parametrize(
    "message",
    [
        _text(id=1, method="ping"),
        _text(id="a", method="tools/list", params={}),
        _text(method="notifications/initialized"),
        _text(id=3, result={}),
        _text(id=4, error={"code": -1, "message": "no"}),
        _text(id=5, method="tools/call", params={"name": "search", "arguments": {"q": "😀"}}),
        _text(id=2**64, method="ping"),
        '{"jsonrpc": "2.0", "id": 6, "method": "ping", "params": {"q": "\\ud83d\\ude00"}}',
        "  " + _text(id=7, method="ping") + "\r\n",
    ],
)
def test_well_formed_messages_pass(message: str) -> None:
    assert vet_message(message) is None
    assert vet_message(message.encode()) is None


@pytest.mark.parametrize(
    ("message", "code", "answer_id"),
    [
        ('{"jsonrpc": "2.0", "id": 1, "method":', PARSE_ERROR, None),
        ('{"jsonrpc": "2.0", "id": NaN, "method": "ping"}', PARSE_ERROR, None),
        ('{"jsonrpc": "2.0", "id": 1, "method": "ping", "x": Infinity}', PARSE_ERROR, None),
        ("", PARSE_ERROR, None),
        ("[" + _text(id=1, method="ping") + "]", INVALID_REQUEST, None),
        ("[]", INVALID_REQUEST, None),
        ("42", INVALID_REQUEST, None),
        (json.dumps({"jsonrpc": "1.0", "id": 2, "method": "ping"}), INVALID_REQUEST, 2),
        (json.dumps({"id": 2, "method": "ping"}), INVALID_REQUEST, 2),
        (_text(id=3), INVALID_REQUEST, 3),
        (_text(id=4, method=7), INVALID_REQUEST, 4),
        (_text(id=5, method="ping", params=[1]), INVALID_PARAMS, 5),
        (_text(id=5, method="ping", params="x"), INVALID_PARAMS, 5),
        (_text(id=1.5, method="ping"), INVALID_REQUEST, 1.5),
        (_text(id=True, method="ping"), INVALID_REQUEST, None),
        (_text(id={"n": 1}, method="ping"), INVALID_REQUEST, None),
        ('{"jsonrpc": "2.0", "id": 1e400, "method": "ping"}', INVALID_REQUEST, None),
        (_text(id=6, method="ping", params={"q": "\ud800"}), INVALID_PARAMS, 6),
        (_text(id=7, method="pi\udfffng"), INVALID_REQUEST, 7),
        (_text(id=8, method="ping", params={"\ud800": 1}), INVALID_PARAMS, 8),
    ],
)
def test_hostile_messages_are_refused_with_the_right_error(
    message: str, code: int, answer_id: object
) -> None:
    rejection = vet_message(message)
    assert rejection is not None
    assert (rejection.code, rejection.id) == (code, answer_id)


def test_nesting_beyond_the_bound_is_refused_with_the_message_id() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    rejection = vet_message(
        '{"jsonrpc": "2.0", "id": 9, "method": "ping", "params": {"d": ' + deep + "}}"
    )
    assert rejection is not None
    assert (rejection.code, rejection.id) == (INVALID_REQUEST, 9)


def test_nesting_up_to_the_bound_passes() -> None:
    inner = "[" * (MAX_NESTING - 2) + "]" * (MAX_NESTING - 2)  # envelope and params add two
    assert vet_message(_text(id=1, method="ping", params={"d": json.loads(inner)})) is None
    deeper = "[" * (MAX_NESTING - 1) + "]" * (MAX_NESTING - 1)
    assert vet_message(_text(id=1, method="ping", params={"d": json.loads(deeper)})) is not None


def test_brackets_inside_strings_are_not_nesting() -> None:
    assert vet_message(_text(id=1, method="ping", params={"q": "[{" * 10_000})) is None


def test_unbalanced_deep_text_is_refused_with_id_null() -> None:
    rejection = vet_message('{"jsonrpc": "2.0", "id": 9, "params": ' + "[" * 1_000)
    assert rejection is not None
    assert rejection.id is None


def test_an_answer_is_one_line_of_json_rpc() -> None:
    rejection = vet_message(_text(id="x\ny", method=5))
    assert rejection is not None
    line = rejection.answer()
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert json.loads(line) == {
        "jsonrpc": "2.0",
        "id": "x\ny",
        "error": {"code": INVALID_REQUEST, "message": rejection.message},
    }
