"""Which TestIO account a mirror holds: bound at the first open, checked at every open.

A mirror is filled from one account. Its ``mirror_account`` row keeps the base URL (without a
user name, password, query or fragment, so nothing secret) and a fingerprint of the base URL and
the API token: HMAC-SHA256 under a random salt of this mirror, over a fixed domain-separation
prefix, the base URL and the token. The token itself is never stored, and the fingerprint does
not give it back (nor, salted per mirror, match the same token's fingerprint in another mirror).

Every open compares. Another base URL, or another token, is refused with
``AccountMismatchError``, which says which and what to do: another ``TESTIO_MIRROR_HOME``, or
``testio-mirror sync --nuke --yes`` (the nuke binds the emptied mirror to the new account). Without
a token (offline reads) only the base URL can be compared. A mirror that holds no data yet takes
the account it is opened for (a first sync with a mistyped token stored nothing to protect), and
so does a mirror from before this check (its first token is adopted). ``serve --sandbox``
rebinds its own mirror at each start (``adopt_account``): the simulated account is the same,
its port and token are new.

Example::

    account = Account.of(settings)
    await check_account(db, account, stamp)  # raises AccountMismatchError
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiosqlite
from pydantic import SecretStr

from testio_mirror.errors import AccountMismatchError
from testio_mirror.settings import Settings
from testio_mirror.store.sqlite.db import Database
from testio_mirror.store.sqlite.timefmt import to_db, utc_now

# Changing the prefix changes every fingerprint: it names this use and its version.
_DOMAIN = b"testio-mirror account fingerprint v1\x00"
_SALT_BYTES = 16
_PARTS = ("products", "features", "tests", "bugs")


@dataclass(frozen=True)
class Account:
    """The account a process is configured for."""

    home: Path
    base_url: str  # as configured
    token: SecretStr | None

    @classmethod
    def of(cls, settings: Settings) -> Account:
        return cls(
            settings.mirror_home,
            str(settings.customer_api_base_url).rstrip("/"),
            settings.customer_api_token,
        )

    @property
    def shown_url(self) -> str:
        """The base URL as stored and shown: scheme, host, port and path only."""
        parts = urlsplit(self.base_url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port is not None else host
        return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))

    def fingerprint(self, salt: str) -> str | None:
        """The keyed fingerprint of base URL and token under ``salt`` (None without a token)."""
        if self.token is None:
            return None
        message = (
            _DOMAIN
            + self.base_url.encode("utf-8")
            + b"\x00"
            + self.token.get_secret_value().encode("utf-8")
        )
        return hmac.new(bytes.fromhex(salt), message, hashlib.sha256).hexdigest()


async def check_account(db: Database, account: Account, now: str, *, bind: bool = True) -> None:
    """Bind the mirror to ``account`` if it is bound to none (or holds nothing yet); else
    make sure it is the account it holds. Reads first: the write lock is taken only to bind,
    and never when not ``bind`` (a process that only reads compares, and writes nothing).

    Raises:
        AccountMismatchError: the mirror holds another base URL's or another token's data.
        StoreError: the mirror cannot be read or written (busy, damaged, ...).
    """
    async with db.reader() as conn:
        rows = list(await conn.execute_fetchall("SELECT * FROM mirror_account"))
    if rows and _mismatch(rows[0], account) is None and not _adopts_token(rows[0], account):
        return
    if not bind:
        if rows:
            problem = _mismatch(rows[0], account)
            if problem is not None:
                async with db.reader() as conn:
                    holds_data = await _holds_data(conn)
                if holds_data:
                    raise _mismatch_error(problem, account)
        return
    async with db.transaction() as conn:
        # Again under the lock: another process may have bound it meanwhile.
        rows = list(await conn.execute_fetchall("SELECT * FROM mirror_account"))
        if not rows:
            await bind_account(conn, account, now)
            return
        row = rows[0]
        problem = _mismatch(row, account)
        if problem is not None:
            if await _holds_data(conn):
                raise _mismatch_error(problem, account)
            await bind_account(conn, account, now)  # nothing to protect: take the new one
        elif _adopts_token(row, account):
            await conn.execute(
                "UPDATE mirror_account SET token_fingerprint = ? WHERE id = 1",
                (account.fingerprint(row["salt"]),),
            )


def _mismatch_error(problem: str, account: Account) -> AccountMismatchError:
    # The agent is not told where the mirror lives: that is the user's machine.
    shown = problem.replace(f"the mirror at {account.home} ", "the mirror ")
    return AccountMismatchError(problem, for_agent=shown)


def _adopts_token(row: aiosqlite.Row, account: Account) -> bool:
    """Bound without a token (offline, or before this check) and opened with one."""
    return row["token_fingerprint"] is None and account.token is not None


async def bind_account(conn: aiosqlite.Connection, account: Account, now: str) -> None:
    """Bind the mirror to ``account`` (a fresh salt), inside the caller's transaction."""
    salt = secrets.token_hex(_SALT_BYTES)
    await conn.execute(
        "INSERT INTO mirror_account (id, base_url, salt, token_fingerprint, bound_at) "
        "VALUES (1, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET base_url = excluded.base_url, "
        "salt = excluded.salt, token_fingerprint = excluded.token_fingerprint, "
        "bound_at = excluded.bound_at",
        (account.shown_url, salt, account.fingerprint(salt), now),
    )


async def adopt_account(settings: Settings) -> None:
    """Bind the mirror at ``settings`` to their account, whatever it held: for
    ``serve --sandbox``, whose simulated account is the same at every start but is reached at a
    new port with a new token.

    Raises:
        StoreError: the mirror cannot be opened.
    """
    db = await Database.open(
        settings.database_path, busy_timeout_seconds=settings.mirror_busy_timeout_seconds
    )
    try:
        async with db.transaction() as conn:
            now = to_db(utc_now())
            assert now is not None
            await bind_account(conn, Account.of(settings), now)
    finally:
        await db.close()


def _mismatch(row: aiosqlite.Row, account: Account) -> str | None:
    """What differs, as the message the user reads; None when nothing does."""
    start_over = (
        "use another TESTIO_MIRROR_HOME for this account, or run `testio-mirror sync --nuke "
        "--yes` to empty this mirror and fill it from the account now configured"
    )
    if row["base_url"] != account.shown_url:
        return (
            f"the mirror at {account.home} holds the TestIO account at {row['base_url']}, but "
            f"TESTIO_CUSTOMER_API_BASE_URL is {account.shown_url}: {start_over}"
        )
    expected = row["token_fingerprint"]
    found = account.fingerprint(row["salt"])
    if expected is not None and found is not None and not hmac.compare_digest(expected, found):
        return (
            f"the mirror at {account.home} was filled with a different API token than "
            f"TESTIO_CUSTOMER_API_TOKEN (for {account.shown_url}): {start_over}. The mirror "
            "keeps only a fingerprint of its token, so a new token of the same account needs "
            "the nuke too"
        )
    return None


async def _holds_data(conn: aiosqlite.Connection) -> bool:
    """Something to protect: entities, or a run in progress (which is about to write them)."""
    query = " UNION ALL ".join(f"SELECT 1 FROM {table}" for table in _PARTS)
    query += " UNION ALL SELECT 1 FROM sync_events WHERE kind = 'run' AND status = 'running'"
    rows = list(await conn.execute_fetchall(f"SELECT EXISTS ({query})"))
    return bool(rows[0][0])
