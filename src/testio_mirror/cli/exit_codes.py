"""The exit codes of every ``testio-mirror`` command, defined once.

A ``MirrorError`` that ends a command exits with its own ``exit_code`` (1 by default, 2 for
settings and serving errors, 4 for ``SyncLockBusyError`` and ``MirrorBusyError``, 5 for
``AddressInUseError``, 6 for ``MirrorDamagedError``, 7 for ``DiskFullError``); they are all
named here.
"""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_PARTIAL: Final = 3  # a sync that stored part of what it was asked for
EXIT_INTERRUPTED: Final = 130  # Ctrl-C, as shells report SIGINT
EXIT_BUSY: Final = 4  # another process holds the sync lock, or is writing to the mirror
EXIT_ADDRESS_IN_USE: Final = 5  # serve: the HTTP address (host and port) is taken
EXIT_MIRROR_DAMAGED: Final = 6  # the mirror file is damaged: rebuild it (sync --nuke) or restore
EXIT_DISK_FULL: Final = 7  # the disk holding the mirror is full
