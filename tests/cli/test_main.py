"""The command line, run as a user runs it: in a child process (help, version, config, the
sandbox command)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from testio_mirror.cli.main import build_parsers, main
from tests.helpers.command_line import env_without_testio, run_command

COMMANDS = ("serve", "demo", "sync", "status", "triage", "changes", "resolve", "config", "sandbox")


@pytest.mark.parametrize(
    "program",
    [[sys.executable, "-m", "testio_mirror"], [str(Path(sys.executable).parent / "testio-mirror")]],
    ids=["python -m", "console script"],
)
def test_help_lists_every_command(program: list[str]) -> None:
    result = subprocess.run(
        [*program, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\s", result.stdout, re.MULTILINE), command


def test_version() -> None:
    result = run_command("--version")
    assert result.returncode == 0
    assert re.fullmatch(r"testio-mirror \d+\.\d+\.\d+\S*\n", result.stdout)


def test_no_command_prints_help_and_fails() -> None:
    result = run_command()
    assert result.returncode == 2
    assert "COMMAND" in result.stdout


def test_config_shows_settings_but_never_the_token(tmp_path: Path) -> None:
    result = run_command("config", cwd=tmp_path, TESTIO_CUSTOMER_API_TOKEN="s3cr3t-token-value")
    assert result.returncode == 0, result.stderr
    assert "TESTIO_PAGE_SIZE" in result.stdout
    assert "set (hidden)" in result.stdout
    assert "s3cr3t-token-value" not in result.stdout + result.stderr


def test_invalid_setting_stops_with_one_line_naming_it(tmp_path: Path) -> None:
    result = run_command("config", cwd=tmp_path, TESTIO_PAGE_SIZE="lots")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "TESTIO_PAGE_SIZE" in lines[0]
    assert "Traceback" not in result.stderr


def test_sandbox_rejects_a_non_loopback_host() -> None:
    result = run_command("sandbox", "--host", "0.0.0.0", "--port", "0")
    assert result.returncode == 2
    assert "loopback" in result.stderr


def test_sandbox_rejects_negative_sizes() -> None:
    result = run_command("sandbox", "--products", "-3")
    assert result.returncode == 2
    assert "--products" in result.stderr


@pytest.fixture
def sandbox_process() -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "testio_mirror",
            "sandbox",
            "--port",
            "0",
            "--products",
            "2",
            "--tests-per-product",
            "12",
            "--token",
            "cli-token",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env_without_testio(),
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def test_sandbox_command_serves_and_prints_how_to_use_it(
    sandbox_process: subprocess.Popen[str],
) -> None:
    assert sandbox_process.stdout is not None
    printed: list[str] = []
    for line in sandbox_process.stdout:
        printed.append(line)
        if "Ctrl-C" in line:
            break
    text = "".join(printed)
    match = re.search(r"base URL\s+(http://127\.0\.0\.1:\d+/customer/v2)", text)
    assert match, text
    base_url = match.group(1)
    assert "token     cli-token" in text
    assert f"export TESTIO_CUSTOMER_API_BASE_URL={base_url}" in text
    answer = httpx.get(
        f"{base_url}/products", headers={"Authorization": "Token cli-token"}, timeout=10
    )
    assert answer.status_code == 200
    assert len(answer.json()["products"]) == 2
    assert httpx.get(f"{base_url}/products", timeout=10).status_code == 401
    # The banner says how to reach the admin API: a command that works as printed.
    admin = re.search(r"curl -H '([^:']+): ([^']+)' (http://\S+/_sandbox/health)", text)
    assert admin, text
    health = httpx.get(admin.group(3), headers={admin.group(1): admin.group(2)}, timeout=10)
    assert health.status_code == 200
    assert health.json()["status"] == "ok"

    sandbox_process.terminate()
    assert sandbox_process.wait(timeout=15) in (0, -15)


@pytest.mark.parametrize("command", ["sync", "status", "config", "demo", "serve", "sandbox"])
def test_a_bad_flag_shows_the_usage_of_its_subcommand(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main([command, "--bogus"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f"usage: testio-mirror {command}" in err
    assert "unrecognized arguments: --bogus" in err


def test_every_command_and_flag_has_help() -> None:
    parser, commands = build_parsers()
    assert set(commands) == set(COMMANDS)
    listing = parser.format_help()
    for name, command in commands.items():
        # The top-level help gives each command a line of text after its name.
        assert re.search(rf"^\s+{name}\s+\w", listing, re.MULTILINE), f"{name} has no help line"
        assert command.description, f"{name} has no description"
        for action in command._actions:  # argparse has no public list of a parser's flags
            if action.dest != "help":
                assert action.help, f"{name} {action.option_strings} has no help"


def test_an_unknown_testio_variable_is_warned_about_once_on_stderr(tmp_path: Path) -> None:
    result = run_command(
        "config",
        cwd=tmp_path,
        TESTIO_MIRROR_HTPP_TOKEN="s3cr3t-typo-value",
        TESTIO_RELIABILITY="quick",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "testio-mirror: unknown setting TESTIO_MIRROR_HTPP_TOKEN ignored; "
        "did you mean TESTIO_MIRROR_HTTP_TOKEN?"
    ]
    assert "s3cr3t-typo-value" not in result.stdout + result.stderr
    assert "HTPP" not in result.stdout


def test_the_warning_stays_off_stdout_in_stdio_serve_mode(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "testio_mirror", "serve", "--sandbox", "--no-initial-sync"],
        input="",  # the client closes stdin at once: the server ends
        capture_output=True,
        text=True,
        timeout=60,
        env=env_without_testio(TESTIO_MIRROR_HOME=str(tmp_path), TESTIO_PAGE_SIZ="5"),
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "unknown setting TESTIO_PAGE_SIZ ignored; did you mean TESTIO_PAGE_SIZE?" in (
        result.stderr
    )


def test_a_home_that_is_a_file_says_so_and_exits_with_the_settings_code(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("a file", encoding="utf-8")
    for command in ("status", "sync"):
        result = run_command(
            command,
            cwd=tmp_path,
            TESTIO_MIRROR_HOME=str(home),
            TESTIO_CUSTOMER_API_TOKEN="token",
            TESTIO_CUSTOMER_API_BASE_URL="http://127.0.0.1:9/customer/v2",
        )
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"{home} is a file, not a directory" in " ".join(result.stderr.split())
        assert "File exists" not in result.stderr
        assert "Traceback" not in result.stderr
