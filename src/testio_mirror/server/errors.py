"""Turning what goes wrong inside a tool into a message an agent can act on.

Known failures become ``ToolError`` with a next step (which tool lists valid ids, what to retry);
anything else is logged with its traceback and answered with a short, generic message, so no
internal detail (and never the token) reaches the client.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from mcp.server.mcpserver.exceptions import ToolError

from testio_mirror.errors import CursorError, MirrorError, OfflineError
from testio_mirror.sync.lock import SyncLockBusyError
from testio_mirror.upstream.errors import AuthError, NotFoundError, UpstreamError

logger = logging.getLogger("testio_mirror.server")


@contextlib.contextmanager
def tool_errors(tool: str, *, not_found_hint: str = "") -> Iterator[None]:
    """Raise ``ToolError`` with a next step for every failure inside the block."""
    try:
        yield
    except ToolError:
        raise
    except NotFoundError as exc:
        raise ToolError(f"{_short(exc)}. {not_found_hint}".strip()) from None
    except CursorError as exc:
        raise ToolError(f"{exc}; or leave cursor out to start from the first page") from None
    except OfflineError as exc:
        raise ToolError(f"{exc}: set TESTIO_CUSTOMER_API_TOKEN and restart the server") from None
    except AuthError as exc:
        raise ToolError(f"{exc}; the mirror can still be queried") from None
    except SyncLockBusyError as exc:
        raise ToolError(f"{exc}; sync_status shows its progress") from None
    except UpstreamError as exc:
        raise ToolError(
            f"TestIO could not answer and the mirror has no copy: {exc}. Try again later, or "
            "call sync_status to see the upstream health"
        ) from None
    except (MirrorError, ValueError) as exc:
        raise ToolError(str(exc)) from None
    except Exception:
        logger.exception("tool %s failed", tool)
        raise ToolError(
            f"{tool} failed unexpectedly; the server logged the details. Other tools still work."
        ) from None


def _short(exc: UpstreamError) -> str:
    # "GET exploratory_tests/9: not found (HTTP 404)" -> what the agent asked for, plainly.
    return str(exc).split(":", 1)[0].replace("GET ", "").rstrip() + " was not found in TestIO"
