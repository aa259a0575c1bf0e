"""The errors testio-mirror raises on purpose, in one tree, with what to do about each.

::

    MirrorError                         base: a problem the user can act on; the message says how
    ├── SettingsError                   a TESTIO_* variable has an unusable value (exit code 2)
    ├── StoreError                      the mirror file cannot be opened or used;
    │   │                               check TESTIO_MIRROR_HOME (a symlink is refused)
    │   ├── MirrorBusyError             another process kept writing to the mirror past
    │   │                               TESTIO_MIRROR_BUSY_TIMEOUT_SECONDS; try again (exit 4)
    │   ├── MirrorDamagedError          the file is damaged; `testio-mirror sync --nuke --yes`
    │   │                               rebuilds it, or restore a backup (exit code 6)
    │   ├── DiskFullError               the disk is full; free space and sync again (exit 7)
    │   └── AccountMismatchError        the mirror holds another account (another base URL
    │                                   or API token); use another TESTIO_MIRROR_HOME, or
    │                                   `testio-mirror sync --nuke --yes` to start over
    ├── RemovedError                    the thing asked for was removed from the account
    │                                   (tombstoned); list what the mirror holds, or sync
    ├── CursorError                     a cursor this mirror did not hand out
    ├── OutboxError                     (store/outbox_records.py) a triage change cannot be
    │   │                               stored or moved as asked; nothing was changed
    │   ├── UnknownBugsError            bugs not in the mirror (or removed); sync or read them
    │   ├── ChangeNotFoundError         no change has that id; list_changes shows them
    │   ├── ChangeStateError            the change's state does not allow it (cancelling an
    │   │                               applied one), or a live change decides the same thing
    │   ├── RejectReasonError           (sync/triage_desk.py) a rejection without a reason, or
    │   │                               with one the account lacks; the message lists them
    │   └── RejectReasonsUnknownError   (sync/triage_desk.py) no reject reasons mirrored and
    │                                   TestIO cannot be asked; sync once when it answers
    ├── OfflineError                    the mirror has no copy and no TestIO token is configured
    │                                   to fetch one; set TESTIO_CUSTOMER_API_TOKEN
    ├── SyncLockBusyError               (sync/lock.py) another live process is syncing; wait
    │   └── SyncLockFileHeldError       (sync/lock.py) another process keeps sync.lock itself
    ├── SyncLockLostError               (sync/lock.py) this run's claim was taken over while it hung
    ├── PushLockBusyError               (sync/push.py) another process kept sending triage
    │                                   changes for 30 s; they stay pending, try again
    ├── UnknownProductsError            (sync/models.py) a sync named products the account
    │                                   does not have; nothing was synced
    ├── SandboxError                    (sandbox/server.py) the sandbox cannot start
    ├── ServeError                      (server/transport.py) the server cannot be served as
    │   │                               asked (a non-loopback host without a strong token)
    │   └── AddressInUseError           another program holds the HTTP port (exit code 5)
    └── UpstreamError                   (upstream/errors.py) a call to TestIO failed:
        ├── AuthError                   the token is missing, wrong or lacks rights
        ├── NotFoundError               the id does not exist in the account
        │   └── BugNotFoundError        GET bugs/{id} answered 404: the bug is gone
        ├── RequestRejectedError        the API refused the request as asked
        ├── RateLimitedError            still rate limited after every retry
        ├── UpstreamUnavailableError    TestIO down or unreachable after every retry
        │   ├── EndpointDownError       one endpoint timed out too often in this run; the next
        │   │                           sync fetches what it did not
        │   ├── NotAskedError           (store/readthrough/rule.py) a query found TestIO known
        │   │                           down and no copy in the mirror; nothing was asked
        │   └── DeadlineError           (store/readthrough/rule.py) a query's fetch missed
        │                               TESTIO_READ_THROUGH_TIMEOUT_SECONDS with no copy to
        │                               serve; the fetch goes on in the background
        ├── BadResponseError            an answer that is not the documented shape
        │   └── OutOfRangeError         (upstream/models.py) an object holds a number SQLite
        │                               cannot store: that object is skipped, not the list
        └── BaseUrlError                no API at TESTIO_CUSTOMER_API_BASE_URL (404, no server)

A class with a module in brackets is defined in that module, next to what raises it, and so are
the classes under it (``upstream/errors.py`` says what to do about each of its own); every other
class is defined here. Those modules import ``MirrorError`` from here: this one imports none.

Everything else is a bug: it is logged with its traceback, never shown as a user's mistake.
"""

from __future__ import annotations


class MirrorError(Exception):
    """A problem the user can act on; the message says what to do."""

    exit_code = 1  # what the CLI exits with when this ends a command


class SettingsError(MirrorError, ValueError):
    """A setting has a value testio-mirror cannot use; the message names the variable."""

    exit_code = 2


class StoreError(MirrorError):
    """The mirror database cannot be opened or used; the message says what to do.

    ``for_agent`` is the same without what only the user's machine should show (the file's
    path, SQLite's own words): a tool answers it, the CLI and the server's log show the message.
    """

    def __init__(self, message: str, *, for_agent: str | None = None) -> None:
        super().__init__(message)
        self.for_agent = message if for_agent is None else for_agent


class MirrorBusyError(StoreError):
    """Another process kept the mirror's write lock longer than this one could wait."""

    exit_code = 4


class MirrorDamagedError(StoreError):
    """The mirror file is damaged (SQLite found it malformed); rebuild it or restore it."""

    exit_code = 6


class DiskFullError(StoreError):
    """The disk (or the file system's quota) holding the mirror is full; what was committed
    is kept."""

    exit_code = 7


class AccountMismatchError(StoreError):
    """The mirror was made for another account: another base URL or another API token.

    Raised when the mirror is opened, by every command, so the data of two accounts never mix.
    """


class RemovedError(MirrorError):
    """The product, test or bug was in the account but was removed from it (the mirror keeps
    it tombstoned): its product left the account, or TestIO said it is gone."""


class CursorError(MirrorError, ValueError):
    """A cursor that this mirror did not hand out (or that was altered)."""


class OfflineError(MirrorError):
    """The mirror has no copy and no TestIO client was configured to fetch one.

    Not an ``UpstreamError``: no call to TestIO was made; the token is missing.
    """
