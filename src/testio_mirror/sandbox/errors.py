"""What the sandbox's account refuses, as the HTTP app answers it (404 and 422)."""

from __future__ import annotations


class NotFoundError(LookupError):
    """The id names nothing the account holds (HTTP 404)."""


class UnprocessableError(ValueError):
    """The request is well-formed but cannot be answered as asked (HTTP 422)."""
