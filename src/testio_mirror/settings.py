"""Every knob of testio-mirror, in one place.

Settings come from the environment (variables prefixed ``TESTIO_``) and from an optional ``.env``
file in the working directory; the environment wins. Each field's description is the text the
README's configuration table shows, and ``tests/test_settings.py`` fails when the table misses one.

Example::

    settings = load_settings()          # raises SettingsError with one readable line
    settings.page_size                  # 25
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    HttpUrl,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from testio_mirror.errors import SettingsError
from testio_mirror.limits import DEFAULT_MAX_ANSWER_BYTES
from testio_mirror.triage import ConflictStrategy

ENV_PREFIX = "TESTIO_"
DEFAULT_BASE_URL = "https://api.test.io/customer/v2"

_SECRET_FIELDS = frozenset({"customer_api_token", "mirror_http_token"})
# TESTIO_ variables that are not settings but are read elsewhere: not warned about as unknown.
OTHER_TESTIO_VARIABLES = frozenset({"TESTIO_RELIABILITY"})  # the reliability tests' size

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
MirrorWrites = Literal["off", "confirm", "on"]
# The health thresholds of quality_report (TESTIO_HEALTH_*): these rates are bad when low, the
# others (rejection, auto-acceptance) when high.
LOW_IS_BAD = frozenset({"health_acceptance_rate", "health_review_rate"})


class Settings(BaseSettings):
    """testio-mirror's configuration. Field descriptions double as user documentation."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
        frozen=True,
    )

    customer_api_token: SecretStr | None = Field(
        default=None,
        description="API token of the TestIO account (secret; never logged or stored).",
    )
    customer_api_base_url: HttpUrl = Field(
        default=HttpUrl(DEFAULT_BASE_URL),
        description="Base URL of the TestIO Customer API v2.",
    )
    mirror_home: Path = Field(
        default=Path("~/.testio-mirror"),
        description="Data directory: the SQLite mirror and the sync lock (logs go to stderr).",
    )
    refresh_interval_seconds: int = Field(
        default=900,
        ge=0,
        le=7 * 24 * 3600,
        description="Seconds between the server's periodic refreshes; 0 turns them off.",
    )
    recent_bug_days: int = Field(
        default=30,
        ge=0,
        le=3650,
        description="The server's start-up sync and refreshes also sync the bugs of tests running "
        "or ended within this many days; 0: they sync no bugs.",
    )
    full_reconcile_interval_seconds: int = Field(
        default=24 * 3600,
        ge=0,
        description="Seconds between full listings of all products (finds deletions); 0 = never.",
    )
    http_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="Most one HTTP request to TestIO may take, connect to last byte.",
    )
    max_concurrent_requests: int = Field(
        default=10,
        ge=1,
        le=100,
        description="Most requests to TestIO in flight at once, for the whole process.",
    )
    page_size: int = Field(
        default=25,
        ge=1,
        le=1000,
        description="Tests per page when listing a product's tests (the API documents 25).",
    )
    bug_batch_size: int = Field(
        default=15,
        ge=1,
        le=200,
        description="Test ids per bugs request; halved automatically on 524.",
    )
    retry_max_attempts: int = Field(
        default=5,
        ge=1,
        le=20,
        description="Attempts per request (first try included) on 5xx, 429, timeouts.",
    )
    retry_max_delay_seconds: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="Longest backoff between two attempts, Retry-After included.",
    )
    open_test_ttl_seconds: int = Field(
        default=300,
        ge=0,
        description="Age after which an open test and its bugs are re-fetched on read.",
    )
    product_ttl_seconds: int = Field(
        default=6 * 3600,
        ge=0,
        description="Age after which products and features are re-fetched on read.",
    )
    read_through_timeout_seconds: float = Field(
        default=2.0,
        gt=0,
        le=600,
        description="How long a query waits for TestIO before answering from the mirror's copy.",
    )
    read_through_probe_interval_seconds: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="While TestIO is down, queries ask it again at most once in this many seconds.",
    )
    removal_confirm_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="A product list that lacks more than this share of the products the mirror "
        "holds (or all of them) is listed a second time before any is marked removed.",
    )
    removal_confirm_minimum: int = Field(
        default=3,
        ge=1,
        description="The fewest missing products that the share above applies to (a list that "
        "lacks every product is always listed twice).",
    )
    conflict_strategy: ConflictStrategy = Field(
        default="manual",
        description="What a triage change does when TestIO's bug changed since the caller saw "
        "it: manual (park it for a person), server_wins, local_wins or latest (docs/triage.md).",
    )
    mirror_writes: MirrorWrites = Field(
        default="confirm",
        description="Triage writes to TestIO: off (no write tool is listed), confirm (a person "
        "confirms each change set) or on.",
    )
    sync_lock_timeout_seconds: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="How long a sync waits for another process's sync lock before giving up.",
    )
    mirror_busy_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="How long a write to the mirror waits while another process is writing to "
        "it before answering that the mirror is busy.",
    )
    max_answer_bytes: int = Field(
        default=DEFAULT_MAX_ANSWER_BYTES,
        ge=2_000,
        le=10_000_000,
        description="Largest tool answer in bytes of JSON; longer lists are cut (with a cursor).",
    )
    mirror_http_token: SecretStr | None = Field(
        default=None,
        description="Bearer token the HTTP transport requires (needed to serve beyond loopback).",
    )
    mirror_http_allowed_origins: str | None = Field(
        default=None,
        description="Browser origins (comma-separated, e.g. https://app.example.com) the HTTP "
        "transport admits besides loopback pages; their CORS preflights need no token.",
    )
    mirror_http_session_idle_seconds: float = Field(
        default=600.0,
        gt=0,
        le=24 * 3600,
        description="Seconds after which an HTTP session with no request and no open stream "
        "is closed.",
    )
    mirror_http_max_sessions: int = Field(
        default=100,
        ge=1,
        le=10000,
        description="Most HTTP sessions open at once; a new one beyond is refused (503).",
    )
    mirror_http_max_sessions_per_client: int = Field(
        default=10,
        ge=1,
        le=10000,
        description="Most HTTP sessions one client (remote address and bearer token) holds; "
        "an initialize beyond closes that client's oldest session.",
    )
    health_acceptance_rate_warning: float = Field(
        default=0.6,
        ge=0,
        le=1,
        description="quality_report: an acceptance rate below this is a warning.",
    )
    health_acceptance_rate_critical: float = Field(
        default=0.4,
        ge=0,
        le=1,
        description="quality_report: an acceptance rate below this is critical (at most the "
        "warning level).",
    )
    health_rejection_rate_warning: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="quality_report: a rejection rate above this is a warning.",
    )
    health_rejection_rate_critical: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="quality_report: a rejection rate above this is critical (at least the "
        "warning level).",
    )
    health_auto_acceptance_rate_warning: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="quality_report: an auto-acceptance rate above this is a warning (the "
        "customer is not deciding).",
    )
    health_auto_acceptance_rate_critical: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="quality_report: an auto-acceptance rate above this is critical (at least "
        "the warning level).",
    )
    health_review_rate_warning: float = Field(
        default=0.7,
        ge=0,
        le=1,
        description="quality_report: a review rate (share of bugs decided) below this is a "
        "warning.",
    )
    health_review_rate_critical: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="quality_report: a review rate below this is critical (at most the warning "
        "level).",
    )
    log_level: LogLevel = Field(
        default="INFO",
        description="Log level (DEBUG, INFO, WARNING, ERROR); logs go to stderr, never stdout.",
    )

    @field_validator("customer_api_token", "mirror_http_token", mode="before")
    @classmethod
    def _blank_token_is_unset(cls, value: object) -> object:
        # An exported-but-empty variable is a common slip; treat it as "no token", not a token.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("mirror_home")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator(
        "health_acceptance_rate_critical",
        "health_rejection_rate_critical",
        "health_auto_acceptance_rate_critical",
        "health_review_rate_critical",
    )
    @classmethod
    def _critical_beyond_warning(cls, value: float, info: ValidationInfo) -> float:
        # A rate that is bad when low must turn critical at or below its warning level, one
        # bad when high at or above it; otherwise a value could be critical and not warned.
        assert info.field_name is not None
        rate = info.field_name.removesuffix("_critical")
        warning = info.data.get(f"{rate}_warning")
        if not isinstance(warning, float | int):
            return value  # the warning level itself was refused: that error says so
        low_is_bad = rate in LOW_IS_BAD
        if (value > warning) if low_is_bad else (value < warning):
            side = "at most" if low_is_bad else "at least"
            raise ValueError(
                f"must be {side} {env_name(rate + '_warning')} ({warning}): a rate "
                f"{'below' if low_is_bad else 'above'} the critical level is past the warning "
                "level too"
            )
        return value

    @property
    def http_allowed_origins(self) -> tuple[str, ...]:
        """``mirror_http_allowed_origins`` as a tuple, without blanks or trailing slashes."""
        raw = self.mirror_http_allowed_origins or ""
        return tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())

    @property
    def database_path(self) -> Path:
        """Where the mirror's SQLite file lives."""
        return self.mirror_home / "mirror.db"


def env_name(field_name: str) -> str:
    """The environment variable that sets ``field_name``."""
    return f"{ENV_PREFIX}{field_name.upper()}"


def unknown_variable_warnings(environ: Mapping[str, str]) -> list[str]:
    """One warning per ``TESTIO_`` variable in ``environ`` that no setting reads, naming the
    closest setting; the variables' values are never part of a warning (one may be a token).

    The CLI writes each to stderr at start (``cli/main.py``); stdout may belong to MCP.
    """
    known = {env_name(name) for name in Settings.model_fields}
    warnings = []
    for name in sorted(environ):
        upper = name.upper()  # settings are read whatever the case of the name
        if not upper.startswith(ENV_PREFIX) or upper in known or upper in OTHER_TESTIO_VARIABLES:
            continue
        import difflib  # here: every command checks, few find a variable to warn about

        close = difflib.get_close_matches(upper, sorted(known), n=1, cutoff=0.8)
        warnings.append(
            f"unknown setting {name} ignored; did you mean {close[0]}?"
            if close
            else f"unknown setting {name} ignored (see Configuration in README.md)"
        )
    return warnings


def check_mirror_home(settings: Settings) -> None:
    """Refuse a ``TESTIO_MIRROR_HOME`` that is (or lies below) a file: creating the mirror would
    fail later with a bare "File exists". Not a validator: the server starts all the same and
    answers every tool with the reason.

    Raises:
        SettingsError: the home or one of its parents is a file.
    """
    home = settings.mirror_home
    for path in (home, *home.parents):
        if path.exists():
            if not path.is_dir():
                raise SettingsError(
                    f"invalid setting TESTIO_MIRROR_HOME: {path} is a file, not a directory: "
                    "point TESTIO_MIRROR_HOME at a directory (it is created if missing) or "
                    "move the file away"
                )
            return


def load_settings(**overrides: object) -> Settings:
    """Read settings, turning pydantic's report into one line that names the variable.

    Raises:
        SettingsError: a variable holds a value that cannot be used.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        problem = f"{env_name(field)}: {error['msg']}"
        # Echo what was given, except for the token: that would print the secret.
        if field not in _SECRET_FIELDS and isinstance(error.get("input"), str | int | float):
            problem += f" (got {error['input']!r})"
        problems.append(problem)
    return "invalid setting " + "; ".join(problems) + " (see Configuration in README.md)"
