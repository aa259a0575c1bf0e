"""Fixtures of the client's unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import respx

from tests.helpers.fake_upstream import BASE


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    """The faked network at ``BASE``; routes not called are fine."""
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router
