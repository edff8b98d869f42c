"""Errors of the OPTIMADE API, each with the HTTP status and title its error response carries.

All derive from :class:`~crystaloop.data.errors.QueryError` (so from ``CrystaloopError``): the
filter translator, the parameter parser and the search raise them; the FastAPI app turns them
into OPTIMADE/JSON:API error documents and the CLI into exit code 2 with the message.
"""

from __future__ import annotations

from dataclasses import dataclass

from crystaloop.data.errors import QueryError

__all__ = [
    "OptimadeRequestError",
    "BadFilterError",
    "FilterNotImplementedError",
    "PageLimitTooLargeError",
    "EntryNotFoundError",
    "VersionNotSupportedError",
    "QueryTimeoutError",
    "FilterTooCostlyError",
    "OverloadedError",
    "OptimadeWarning",
]


class OptimadeRequestError(QueryError):
    """A request the API cannot answer with data: HTTP ``status`` with ``title`` and the message.

    ``retry_after`` (seconds), when set, goes into the response's ``Retry-After`` header.
    """

    status: int = 400
    title: str = "Bad Request"
    retry_after: int | None = None

    def __init__(self, detail: str, *, parameter: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.parameter = parameter


class BadFilterError(OptimadeRequestError):
    """The filter (or another query parameter) is malformed: HTTP 400."""


class FilterNotImplementedError(OptimadeRequestError):
    """The filter is valid OPTIMADE but uses something this implementation does not support: HTTP 501."""

    status = 501
    title = "Not Implemented"


class PageLimitTooLargeError(OptimadeRequestError):
    """``page_limit`` above the server's maximum: HTTP 403, as the reference implementation answers."""

    status = 403
    title = "Forbidden"


class EntryNotFoundError(OptimadeRequestError):
    """No entry with the requested id, or no such endpoint: HTTP 404."""

    status = 404
    title = "Not Found"


class VersionNotSupportedError(OptimadeRequestError):
    """A versioned URL for an API version this server does not serve: HTTP 553 (OPTIMADE)."""

    status = 553
    title = "Version Not Supported"


class FilterTooCostlyError(BadFilterError):
    """The filter is well-formed but would cost more than the server's limits allow: HTTP 400.

    The message names the limit (``max_set_values``, ``max_probes``…) and its value.
    """


class QueryTimeoutError(OptimadeRequestError):
    """The database did not answer within the statement timeout: HTTP 503, try a narrower filter."""

    status = 503
    title = "Service Unavailable"


class OverloadedError(OptimadeRequestError):
    """The server is saturated (expensive-query slots, connections or requests in flight): HTTP 503.

    Answered at once with ``Retry-After`` instead of queueing the request.
    """

    status = 503
    title = "Service Unavailable"

    def __init__(self, detail: str, *, retry_after: int = 1, parameter: str | None = None) -> None:
        super().__init__(detail, parameter=parameter)
        self.retry_after = retry_after


@dataclass(frozen=True)
class OptimadeWarning:
    """A non-fatal remark that goes into ``meta.warnings`` (unknown provider field, ignored parameter)."""

    title: str
    detail: str

    def as_json(self) -> dict[str, str]:
        """The warning object of the response (``type`` is always ``"warning"``)."""
        return {"type": "warning", "title": self.title, "detail": self.detail}
