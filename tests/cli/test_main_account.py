"""A home holds one account: every command refuses a home filled from another base URL or
another token (saying which, never showing a token), and ``sync --nuke --yes`` starts it over
with the account now configured."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from testio_mirror.sandbox import DatasetSpec, SandboxServer
from tests.conftest import SandboxFactory
from tests.helpers.command_line import run_command

TINY = DatasetSpec(seed=5, products=2, section_products=0, tests_per_product=10, bugs_per_test=1)
OTHER = DatasetSpec(seed=6, products=3, section_products=0, tests_per_product=5, bugs_per_test=1)
WRONG_TOKEN = "not-this-account-token-0123456789"


def account(sandbox: SandboxServer, home: Path, token: str | None = None) -> dict[str, str]:
    return {
        "TESTIO_CUSTOMER_API_BASE_URL": sandbox.base_url,
        "TESTIO_CUSTOMER_API_TOKEN": token or sandbox.token,
        "TESTIO_MIRROR_HOME": str(home),
    }


def products_in(home: Path) -> int:
    with sqlite3.connect(home / "mirror.db") as plain:
        rows = plain.execute("SELECT count(*) FROM products WHERE deleted_at IS NULL").fetchall()
    return int(rows[0][0])


def test_every_command_refuses_a_home_of_another_base_url(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    first, second = make_sandbox(TINY), make_sandbox(OTHER)
    home = tmp_path / "home"
    assert run_command("sync", cwd=tmp_path, **account(first, home)).returncode == 0
    for command in (["sync"], ["status"], ["status", "--json"]):
        refused = run_command(*command, cwd=tmp_path, **account(second, home))
        assert refused.returncode == 1, refused.stdout + refused.stderr
        message = " ".join(refused.stderr.split())
        assert first.base_url in message, message
        assert second.base_url in message, message
        assert "TESTIO_MIRROR_HOME" in message, message
        assert "testio-mirror sync --nuke --yes" in message, message
        assert "Traceback" not in refused.stderr
    assert products_in(home) == TINY.products  # nothing of the other account got in


def test_another_token_is_refused_without_showing_a_token(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(TINY)
    home = tmp_path / "home"
    assert run_command("sync", cwd=tmp_path, **account(sandbox, home)).returncode == 0
    refused = run_command("sync", cwd=tmp_path, **account(sandbox, home, WRONG_TOKEN))
    assert refused.returncode == 1
    message = " ".join(refused.stderr.split())
    assert "a different API token" in message, message
    output = refused.stdout + refused.stderr
    assert WRONG_TOKEN not in output
    assert sandbox.token not in output


def test_a_nuke_starts_a_home_over_with_the_account_now_configured(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    first, second = make_sandbox(TINY), make_sandbox(OTHER)
    home = tmp_path / "home"
    assert run_command("sync", cwd=tmp_path, **account(first, home)).returncode == 0
    nuked = run_command("sync", "--nuke", "--yes", "--json", cwd=tmp_path, **account(second, home))
    assert nuked.returncode == 0, nuked.stdout + nuked.stderr
    assert products_in(home) == OTHER.products
    status = run_command("status", "--json", cwd=tmp_path, **account(second, home))
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["counts"]["products"] == OTHER.products
    # Now the first account is the other one.
    assert run_command("status", cwd=tmp_path, **account(first, home)).returncode == 1


def test_a_nuke_without_yes_leaves_a_home_of_another_account_alone(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    first, second = make_sandbox(TINY), make_sandbox(OTHER)
    home = tmp_path / "home"
    assert run_command("sync", cwd=tmp_path, **account(first, home)).returncode == 0
    unconfirmed = run_command("sync", "--nuke", cwd=tmp_path, **account(second, home))
    assert unconfirmed.returncode == 2
    assert products_in(home) == TINY.products
    assert run_command("status", cwd=tmp_path, **account(first, home)).returncode == 0
