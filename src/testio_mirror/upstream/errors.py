"""Every error a call to the TestIO Customer API can end in, and what the user should do.

::

    UpstreamError                   base: any failed call to TestIO
    ├── AuthError                   401/403: the token is missing, wrong or lacks rights;
    │                               set TESTIO_CUSTOMER_API_TOKEN to a valid customer API token
    ├── NotFoundError               404: the id does not exist (or is not visible to this token)
    │   └── BugNotFoundError        ``GET bugs/{id}`` answered 404: the bug was deleted or this
    │                               token cannot see it
    ├── RequestRejectedError        other 4xx (400, 409, 422 ...): the API refused the request
    │                               as asked; the message gives the status's reason
    ├── RateLimitedError            429 still answered after every retry; wait and try again,
    │                               or lower TESTIO_MAX_CONCURRENT_REQUESTS
    ├── UpstreamUnavailableError    5xx, timeouts or connection failures after every retry;
    │                               TestIO is down or unreachable: try later, check the network
    │                               and TESTIO_CUSTOMER_API_BASE_URL
    │   └── EndpointDownError       one endpoint timed out too often in this run: not asked
    │                               again until the next sync, which fetches what is missing
    ├── BadResponseError            an answer that is not JSON or not the documented shape;
    │                               a TestIO change or a proxy in the way: report it
    └── BaseUrlError                the product list, the first call of every sync, found no
                                    API at TESTIO_CUSTOMER_API_BASE_URL (404, or no connection
                                    at all): the sync stops at once; fix the setting

Messages name the request (method and path), the status and a reason in our own words; they
never copy what an answer says (its body or headers, which a server may fill with the token in
any form), and the client redacts the ``Authorization`` header from everything it logs.
"""

from __future__ import annotations

from testio_mirror.errors import MirrorError


class UpstreamError(MirrorError):
    """A call to the TestIO Customer API failed."""

    def __init__(
        self, message: str, *, method: str = "", path: str = "", status: int | None = None
    ) -> None:
        super().__init__(message)
        self.method = method
        self.path = path
        self.status = status

    @property
    def request(self) -> str:
        """``"GET products/1"``, or ``""`` when the error is not about one request."""
        return f"{self.method} {self.path}".strip()


class AuthError(UpstreamError):
    """TestIO refused the token (401/403): set TESTIO_CUSTOMER_API_TOKEN to a valid token."""


class NotFoundError(UpstreamError):
    """The requested object does not exist in the account (404)."""


class BugNotFoundError(NotFoundError):
    """``GET bugs/{id}`` answered 404: the bug is gone from TestIO, or this token cannot see it."""

    def __init__(self, bug_id: int) -> None:
        super().__init__(
            f"GET bugs/{bug_id}: bug {bug_id} is not in TestIO (HTTP 404): it was deleted, or "
            "this token cannot see it",
            method="GET",
            path=f"bugs/{bug_id}",
            status=404,
        )
        self.bug_id = bug_id


class RequestRejectedError(UpstreamError):
    """TestIO refused the request as asked (a 4xx other than 401, 403, 404 and 429)."""


class RateLimitedError(UpstreamError):
    """TestIO kept answering 429 after every retry."""

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        path: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, method=method, path=path, status=429)
        self.retry_after = retry_after


class UpstreamUnavailableError(UpstreamError):
    """5xx, timeouts or connection failures outlasted every retry; ``connected`` is False when
    the last attempt never reached a server (refused, no such host, connect timeout)."""

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        path: str = "",
        status: int | None = None,
        connected: bool = True,
    ) -> None:
        super().__init__(message, method=method, path=path, status=status)
        self.connected = connected


class EndpointDownError(UpstreamUnavailableError):
    """One endpoint timed out too often in this run (a ``TimeoutBudget`` ran out): it is not
    asked again in this run; the next sync fetches what it did not."""


class BadResponseError(UpstreamError):
    """The answer was not JSON, or not the shape the API documents."""


class BaseUrlError(UpstreamError):
    """No TestIO API answers at the configured base URL: the product list, which every sync
    asks for first, was answered 404 or never reached a server. Every other call would fail the
    same way, so a sync stops at once (``wrong_base_url``)."""


def wrong_base_url(error: UpstreamError, base_url: str) -> BaseUrlError | None:
    """``error`` of the product list as a ``BaseUrlError`` naming ``base_url``, when it means
    that no API is there (a 404, or no connection at all); None for any other failure."""
    shown = _without_credentials(base_url)
    if isinstance(error, NotFoundError):
        problem = f"TestIO answered 404 for {error.request or 'the product list'}"
    elif isinstance(error, UpstreamUnavailableError) and not error.connected:
        # "GET products: connection failed (ConnectError) after 5 attempts", without the
        # generic advice after it: this message gives the precise one.
        problem = str(error).split(";", 1)[0]
    else:
        return None
    return BaseUrlError(
        f"{problem}: is TESTIO_CUSTOMER_API_BASE_URL right? It is {shown}",
        method=error.method,
        path=error.path,
        status=error.status,
    )


def _without_credentials(url: str) -> str:
    """``url`` without a ``user:password@`` part or a query, which could hold a secret."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url.split("?", 1)[0]
    host, slash, path = rest.partition("/")
    host = host.rpartition("@")[2]
    return f"{scheme}://{host}{slash}{path}".split("?", 1)[0]
