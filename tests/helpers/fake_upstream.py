"""A faked network's shared pieces for the upstream unit tests."""

from __future__ import annotations

import random
from datetime import datetime
from email.utils import format_datetime
from typing import Any

from testio_mirror.settings import load_settings
from testio_mirror.upstream.client import CustomerApiClient

BASE = "https://api.example.test/customer/v2"
TOKEN = "tok-unit-7f3a"
BUG = {"bug": {"id": 7, "status": "accepted"}}


class Sleeps:
    """A fake ``asyncio.sleep`` that records the delays asked for."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def make_client(sleeps: Sleeps | None = None, **overrides: Any) -> CustomerApiClient:
    values: dict[str, Any] = {
        "customer_api_token": TOKEN,
        "customer_api_base_url": BASE,
        "retry_max_attempts": 3,
        "retry_max_delay_seconds": 30.0,
        "max_concurrent_requests": 4,
        "bug_batch_size": 15,
    }
    values.update(overrides)
    return CustomerApiClient(
        load_settings(**values), sleep=sleeps or Sleeps(), rng=random.Random(0)
    )


def http_date(moment: datetime) -> str:
    """``moment`` as an HTTP date (a ``Retry-After`` form)."""
    return format_datetime(moment, usegmt=True)
