"""``fit``: what is cut to bring an answer under its ceiling, and what never is."""

from __future__ import annotations

from typing import Any

import orjson

from testio_mirror.server.answer_bounds import SHORTEST_CUT, fit


def test_many_short_steps_are_cut_as_a_list() -> None:
    data: dict[str, Any] = {"bug": {"id": 1, "steps": [f"step {i}" for i in range(20_000)]}}
    raw = fit(data, 3_000, list_field=None, cursors=None)
    assert len(raw) <= 3_000
    assert orjson.loads(raw) == data
    steps = data["bug"]["steps"]
    assert 1 <= len(steps) < 20_000
    assert steps == [f"step {i}" for i in range(len(steps))]  # the first ones, whole


def test_short_texts_cursors_and_hints_stay_whole() -> None:
    title = "t" * SHORTEST_CUT
    data: dict[str, Any] = {
        "title": title,
        "next_cursor": "c" * 300,
        "body": "b" * 50_000,
    }
    raw = fit(data, 2_000, list_field=None, cursors=None)
    assert len(raw) <= 2_000
    assert data["title"] == title
    assert data["next_cursor"] == "c" * 300
    assert data["body"].startswith("bbb")
    assert data["body"].endswith("…")
    assert data["truncated"] is True
    assert "long texts" in data["hint"]


def test_a_list_without_cursors_is_cut_with_a_hint_saying_so() -> None:
    data: dict[str, Any] = {"rows": [{"n": i, "text": "x" * 50} for i in range(200)]}
    raw = fit(data, 2_000, list_field="rows", cursors=None)
    assert len(raw) <= 2_000
    assert [row["n"] for row in data["rows"]] == list(range(len(data["rows"])))
    assert "next_cursor" not in data
    assert f"first {len(data['rows'])} of 200 rows" in data["hint"]
