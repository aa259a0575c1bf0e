"""The errors testio-mirror raises on purpose, in one tree, with what to do about each.

::

    MirrorError                         base: a problem the user can act on; the message says how
    ├── SettingsError                   (settings.py) a TESTIO_* variable has an unusable value
    ├── StoreError                      (store/db.py) the mirror file cannot be opened or used;
    │                                   check TESTIO_MIRROR_HOME, or move a damaged file away
    ├── CursorError                     (store/cursor.py) a cursor this mirror did not hand out
    ├── SyncLockBusyError               (sync/lock.py) another live process is syncing; wait
    ├── SandboxError                    (sandbox/server.py) the sandbox cannot start
    ├── ServeError                      (server/transport.py) the server cannot be served as
    │                                   asked (a non-loopback host without a bearer token)
    └── UpstreamError                   (upstream/errors.py) a call to TestIO failed; its own
                                        tree there: auth, not found, rejected, rate limited,
                                        unavailable, bad response (and OfflineError in
                                        store/readthrough.py: no copy and no token)

Everything else is a bug: it is logged with its traceback, never shown as a user's mistake.
"""

from __future__ import annotations


class MirrorError(Exception):
    """A problem the user can act on; the message says what to do."""

    exit_code = 1  # what the CLI exits with when this ends a command
