"""Prompt requests the server cannot render: JSON-RPC -32602 saying what is valid, no traceback.

Both eras are asked: the 2026-07-28 in-memory client and a 2025-11-25 (``mode="legacy"``) one,
whose answers travel the JSON-RPC dispatcher that logs handler failures.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from testio_mirror.server import build_server
from tests.conftest import SandboxFactory
from tests.helpers.settings import make_settings

BAD_REQUESTS: list[tuple[str, dict[str, Any], list[str]]] = [
    ("no_such_prompt", {}, ["no_such_prompt", "test_status_report", "product_quality_review"]),
    ("test_status_report", {}, ["test_id", "required", "whole number"]),
    ("test_status_report", {"test_id": "abc"}, ["test_id", "'abc'", "whole number"]),
    ("test_status_report", {"test_id": "0"}, ["test_id", "whole number"]),
    ("test_status_report", {"test_id": "9" * 30}, ["test_id", "whole number"]),
    ("test_status_report", {"test_id": "17", "colour": "red"}, ["colour", "test_id"]),
    ("product_quality_review", {"since": "2026-01-01"}, ["product_id", "required"]),
    ("product_quality_review", {"product_id": "x1"}, ["product_id", "'x1'"]),
    ("product_quality_review", {"product_id": "3", "since": "last week"}, ["since", "YYYY-MM-DD"]),
    ("product_quality_review", {"product_id": "3", "since": "2026-02-30"}, ["since", "YYYY-MM-DD"]),
    ("prep_customer_meeting", {"product_ids": "101;102"}, ["product_ids", "'101;102'", "commas"]),
    ("prep_customer_meeting", {"product_ids": "101,,102"}, ["product_ids", "commas"]),
    ("prep_customer_meeting", {"product_ids": ",".join(["7"] * 51)}, ["product_ids", "up to 50"]),
    ("prep_customer_meeting", {"product_ids": "0"}, ["product_ids", "commas"]),
    ("prep_customer_meeting", {"period": "7d"}, ["period", "'7d'", "30d", "quarter"]),
    ("prep_customer_meeting", {"period": "2026-03-01..2026-01-01"}, ["period", "YYYY-MM-DD.."]),
    ("prep_customer_meeting", {"period": "2026-01-01"}, ["period", "YYYY-MM-DD.."]),
    ("prep_customer_meeting", {"product_id": "101"}, ["product_id", "product_ids?, period?"]),
]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_bad_prompt_requests_are_invalid_params_without_a_traceback(
    make_sandbox: SandboxFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    mode: str,
) -> None:
    sandbox = make_sandbox()
    server = build_server(make_settings(sandbox, tmp_path / "home"), initial_sync=False)
    caplog.set_level(logging.DEBUG)
    async with Client(server, mode=mode) as client:  # type: ignore[arg-type]
        for name, arguments, mentions in BAD_REQUESTS:
            with pytest.raises(MCPError) as raised:
                await client.get_prompt(name, arguments)
            assert raised.value.code == INVALID_PARAMS, (name, arguments, raised.value.message)
            for mention in mentions:
                assert mention in raised.value.message, (name, arguments, raised.value.message)
        # A good request still renders after all of them.
        report = await client.get_prompt("test_status_report", {"test_id": "100017"})
        assert "test_id=100017" in getattr(report.messages[0].content, "text", "")
    tracebacks = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert tracebacks == [], [r.getMessage() for r in tracebacks]


async def test_listed_prompt_arguments_say_what_they_accept(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    server = build_server(make_settings(make_sandbox(), tmp_path / "home"), initial_sync=False)
    async with Client(server) as client:
        listed = {p.name: p for p in (await client.list_prompts()).prompts}
    arguments = {
        (prompt, arg.name): arg for prompt, p in listed.items() for arg in (p.arguments or [])
    }
    assert "whole number" in (arguments["test_status_report", "test_id"].description or "")
    assert "YYYY-MM-DD" in (arguments["product_quality_review", "since"].description or "")
    assert arguments["product_quality_review", "since"].required is False
    assert "30d" in (arguments["prep_customer_meeting", "period"].description or "")
    assert arguments["prep_customer_meeting", "product_ids"].required is False
