"""Every numeric flag is checked by the argument parser: out of range is a usage error (exit 2)."""

from __future__ import annotations

import argparse

import pytest

from testio_mirror.cli.arguments import MAX_PORT, number, whole_number
from testio_mirror.cli.main import build_parser
from testio_mirror.limits import MAX_ID


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--transport", "http", "--port", "70000"],
        ["serve", "--port", "-1"],
        ["serve", "--sandbox-latency-ms", "nan"],
        ["serve", "--sandbox-latency-ms", "1e400"],
        ["sandbox", "--port", "70000"],
        ["sandbox", "--latency-ms", "inf"],
        ["sandbox", "--products", "99999999999999999999"],
        ["sandbox", "--sections", "0"],
        ["sandbox", "--seed", str(2**63)],
        ["sandbox", "--evolve-interval", "-0.5"],
        ["sync", "--product", "0"],
        ["sync", "--product", str(2**63)],
        ["status", "--period-hours", "1e300"],
    ],
)
def test_an_out_of_range_number_is_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(argv)
    assert stopped.value.code == 2
    assert "out of range" in capsys.readouterr().err


def test_the_edges_of_a_range_are_accepted() -> None:
    args = build_parser().parse_args(["serve", "--port", str(MAX_PORT)])
    assert args.port == MAX_PORT
    args = build_parser().parse_args(["sync", "--product", str(MAX_ID)])
    assert args.products == [MAX_ID]


def test_the_message_names_the_range_and_a_bad_word_is_named() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="give 1 to 10"):
        whole_number(1, 10)("11")
    with pytest.raises(argparse.ArgumentTypeError, match="is not a whole number"):
        whole_number(1, 10)("ten")
    with pytest.raises(argparse.ArgumentTypeError, match="is not a number"):
        number(0, 1)("half")
    assert number(0, 1)("0.5") == 0.5
