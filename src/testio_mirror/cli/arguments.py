"""Number types for the command line: every numeric flag is checked by the argument parser, so a
value out of range is a usage error (exit 2) that names the range, never a traceback later.

Example::

    parser.add_argument("--port", type=whole_number(0, MAX_PORT))
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Final

MAX_PORT: Final = 65_535
MAX_COUNT: Final = 1_000_000  # sizes of a generated dataset and of the sandbox's knobs
MAX_LATENCY_MS: Final = 60_000.0
MAX_HOURS: Final = 24.0 * 366 * 100


def whole_number(minimum: int, maximum: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``minimum`` to ``maximum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"{text} is out of range: give {minimum} to {maximum}")
        return value

    return parse


def number(minimum: float, maximum: float) -> Callable[[str], float]:
    """An argparse type: a finite number from ``minimum`` to ``maximum``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(
                f"{text} is out of range: give {minimum:g} to {maximum:g}"
            )
        return value

    return parse
