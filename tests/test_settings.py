"""Settings: defaults, environment and .env, one-line errors, and the README table."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from testio_mirror.errors import SettingsError
from testio_mirror.settings import (
    DEFAULT_BASE_URL,
    Settings,
    check_mirror_home,
    env_name,
    load_settings,
    unknown_variable_warnings,
)

README = Path(__file__).resolve().parents[1] / "README.md"
ROW = re.compile(r"^\|\s*`(TESTIO_[A-Z_]+)`\s*\|\s*([^|]*?)\s*\|\s*([^|]*?)\s*\|\s*$")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TESTIO_ variable and no .env from the developer's machine leaks into these tests."""
    for name in list(os.environ):
        if name.startswith("TESTIO_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_follow_the_design() -> None:
    settings = load_settings()
    assert settings.customer_api_token is None
    assert str(settings.customer_api_base_url) == DEFAULT_BASE_URL
    assert settings.refresh_interval_seconds == 900
    assert settings.page_size == 25
    assert settings.max_concurrent_requests == 10
    assert settings.mirror_home == Path("~/.testio-mirror").expanduser()
    assert settings.database_path == settings.mirror_home / "mirror.db"


def test_environment_sets_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TESTIO_CUSTOMER_API_TOKEN", "tok-123")
    monkeypatch.setenv("TESTIO_CUSTOMER_API_BASE_URL", "http://127.0.0.1:9/customer/v2")
    monkeypatch.setenv("TESTIO_REFRESH_INTERVAL_SECONDS", "0")
    monkeypatch.setenv("TESTIO_MIRROR_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("TESTIO_LOG_LEVEL", "debug")
    settings = load_settings()
    assert settings.customer_api_token is not None
    assert settings.customer_api_token.get_secret_value() == "tok-123"
    assert str(settings.customer_api_base_url) == "http://127.0.0.1:9/customer/v2"
    assert settings.refresh_interval_seconds == 0
    assert settings.mirror_home == tmp_path / "data"
    assert settings.log_level == "DEBUG"


def test_the_answer_ceiling_defaults_to_60000_bytes_and_has_bounds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().max_answer_bytes == 60_000
    monkeypatch.setenv("TESTIO_MAX_ANSWER_BYTES", "8000")
    assert load_settings().max_answer_bytes == 8000
    monkeypatch.setenv("TESTIO_MAX_ANSWER_BYTES", "100")  # too small to hold any answer
    with pytest.raises(SettingsError, match="TESTIO_MAX_ANSWER_BYTES"):
        load_settings()


def test_mirror_home_expands_the_user_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTIO_MIRROR_HOME", "~/somewhere")
    assert load_settings().mirror_home == Path.home() / "somewhere"


def test_dotenv_file_is_read_and_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("TESTIO_PAGE_SIZE=40\nTESTIO_BUG_BATCH_SIZE=7\n")
    monkeypatch.setenv("TESTIO_BUG_BATCH_SIZE", "9")
    settings = load_settings()
    assert settings.page_size == 40
    assert settings.bug_batch_size == 9


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TESTIO_PAGE_SIZE", "abc"),
        ("TESTIO_PAGE_SIZE", "0"),
        ("TESTIO_REFRESH_INTERVAL_SECONDS", "-1"),
        ("TESTIO_MAX_CONCURRENT_REQUESTS", "1000"),
        ("TESTIO_HTTP_TIMEOUT_SECONDS", "0"),
        ("TESTIO_CUSTOMER_API_BASE_URL", "not a url"),
        ("TESTIO_LOG_LEVEL", "loud"),
    ],
)
def test_invalid_value_fails_with_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert variable in message
    assert "\n" not in message


def test_error_messages_never_echo_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    # Any string is a valid token, so cause an error elsewhere: the token must not ride along.
    monkeypatch.setenv("TESTIO_CUSTOMER_API_TOKEN", "very-secret-token")
    monkeypatch.setenv("TESTIO_PAGE_SIZE", "x")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "very-secret-token" not in str(caught.value)


def test_an_empty_token_counts_as_not_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTIO_CUSTOMER_API_TOKEN", "  ")
    assert load_settings().customer_api_token is None


def test_token_is_hidden_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTIO_CUSTOMER_API_TOKEN", "very-secret-token")
    settings = load_settings()
    assert "very-secret-token" not in repr(settings)
    assert "very-secret-token" not in str(settings.model_dump())


def test_settings_are_immutable() -> None:
    settings = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.page_size = 99  # type: ignore[misc]


def _readme_rows() -> dict[str, tuple[str, str]]:
    rows: dict[str, tuple[str, str]] = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            rows[match.group(1)] = (match.group(2), match.group(3))
    return rows


def _documented_default(field_name: str) -> str:
    default = Settings.model_fields[field_name].default
    return "(none)" if default is None else f"`{default}`"


def test_readme_documents_every_setting_with_its_default() -> None:
    rows = _readme_rows()
    for name, field in Settings.model_fields.items():
        variable = env_name(name)
        assert variable in rows, f"README's configuration table lacks {variable}"
        default, meaning = rows[variable]
        assert default == _documented_default(name), f"README's default for {variable}"
        assert meaning == field.description, f"README's meaning for {variable}"


def test_readme_documents_no_setting_that_does_not_exist() -> None:
    known = {env_name(name) for name in Settings.model_fields}
    assert set(_readme_rows()) <= known


def test_an_unknown_testio_variable_is_named_with_the_closest_setting() -> None:
    warnings = unknown_variable_warnings(
        {
            "TESTIO_MIRROR_HTPP_TOKEN": "s3cret-value",
            "TESTIO_PAGE_SIZE": "10",  # a setting
            "testio_log_level": "INFO",  # settings are read whatever the case
            "TESTIO_RELIABILITY": "long",  # read by the test suite, not a setting
            "TESTIO_NOTHING_LIKE_IT": "1",
            "PATH": "/bin",
        }
    )
    assert warnings == [
        "unknown setting TESTIO_MIRROR_HTPP_TOKEN ignored; did you mean TESTIO_MIRROR_HTTP_TOKEN?",
        "unknown setting TESTIO_NOTHING_LIKE_IT ignored (see Configuration in README.md)",
    ]
    assert not any("s3cret-value" in w for w in warnings)


def test_a_home_that_is_a_file_is_a_settings_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    afile = tmp_path / "home"
    afile.write_text("not a directory", encoding="utf-8")
    for home in (afile, afile / "below"):
        monkeypatch.setenv("TESTIO_MIRROR_HOME", str(home))
        settings = load_settings()  # the server still starts, and answers with the reason
        with pytest.raises(SettingsError) as raised:
            check_mirror_home(settings)
        message = str(raised.value)
        assert "TESTIO_MIRROR_HOME" in message
        assert f"{afile} is a file, not a directory" in message
    monkeypatch.setenv("TESTIO_MIRROR_HOME", str(tmp_path / "new" / "home"))
    check_mirror_home(load_settings())  # a home yet to be made is fine
