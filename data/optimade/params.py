"""OPTIMADE URL query parameters: which each endpoint accepts, and their checked values.

Rules (OPTIMADE v1.2, "Handling unknown query parameters"): an unknown parameter without a
prefix, or with our ``_crystaloop_`` prefix, is a 400 error; one with another known provider's
prefix is ignored; one with an unknown prefix is ignored with a warning. Pagination other than
``page_limit``/``page_offset`` is ignored with a warning, as the reference implementation does.
A parameter given twice is a 400 error (which value was meant is unclear).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from crystaloop.data.optimade.config import OptimadeConfig
from crystaloop.data.optimade.errors import BadFilterError, OptimadeWarning, PageLimitTooLargeError
from crystaloop.data.optimade.fields import KNOWN_PROVIDER_PREFIXES, PROVIDER_PREFIX

__all__ = ["ListingParams", "Endpoint", "parse_params", "ACCEPTED"]

Endpoint = Literal["listing", "single", "info"]

_COMMON = frozenset({"response_format", "email_address", "api_hint"})
ACCEPTED: dict[str, frozenset[str]] = {
    "listing": _COMMON
    | {"filter", "response_fields", "sort", "page_limit", "page_offset", "include"}
    | {"page_number", "page_cursor", "page_above", "page_below"},
    "single": _COMMON | {"response_fields", "include"},
    "info": _COMMON,
}
_IGNORED_PAGING = ("page_number", "page_cursor", "page_above", "page_below")
_MAX_OFFSET = 2**62


@dataclass
class ListingParams:
    """Checked parameters of one request (fields unused by an endpoint keep their defaults)."""

    filter: str | None = None
    response_fields: str | None = None
    sort: str | None = None
    page_limit: int = 20
    page_offset: int = 0
    warnings: list[OptimadeWarning] = field(default_factory=list)


def _integer(name: str, raw: str) -> int:
    text = raw.strip()
    if not text.isascii() or not text.isdigit():
        raise BadFilterError(f"{name} must be a non-negative integer, got {raw[:50]!r}", parameter=name)
    return int(text)


def parse_params(items: Iterable[tuple[str, str]], endpoint: Endpoint, config: OptimadeConfig) -> ListingParams:
    """Check the query parameters of a request to an ``endpoint`` of that kind.

    Raises:
        BadFilterError: unknown or repeated parameter, malformed value (HTTP 400).
        PageLimitTooLargeError: ``page_limit`` above ``config.page_limit_max`` (HTTP 403).
    """
    accepted = ACCEPTED[endpoint]
    values: dict[str, str] = {}
    params = ListingParams(page_limit=config.page_limit)
    for name, value in items:
        if name in values:
            raise BadFilterError(f"query parameter {name!r} is given more than once", parameter=name)
        values[name] = value
        if "\x00" in name or "\x00" in value:
            raise BadFilterError("query parameters must not contain NUL characters", parameter=name.replace("\x00", "")[:50])
        limit = config.max_filter_length if name == "filter" else config.max_param_length
        if len(value) > limit:
            raise BadFilterError(f"query parameter {name[:50]!r} is {len(value)} characters long; at most {limit} are accepted", parameter=name[:50])
        if name in accepted:
            continue
        parts = name.split("_")
        if name.startswith("_") and len(parts) > 2 and parts[1] != PROVIDER_PREFIX:
            if parts[1] not in KNOWN_PROVIDER_PREFIXES:
                params.warnings.append(
                    OptimadeWarning("UnknownProviderQueryParameter", f"query parameter {name!r} is unrecognised and was ignored")
                )
            continue
        allowed = ", ".join(sorted(accepted))
        raise BadFilterError(f"query parameter {name[:50]!r} is not recognised by this endpoint; allowed: {allowed}", parameter=name[:50])
    fmt = values.get("response_format", "json")
    if fmt != "json":
        raise BadFilterError(f"response_format {fmt[:50]!r} is not served; allowed: json", parameter="response_format")
    include = values.get("include")
    if include is not None and include.strip() not in ("", "references"):
        raise BadFilterError(f"include {include[:50]!r}: structures here have no relationships; allowed: references (empty)", parameter="include")
    for name in _IGNORED_PAGING:
        if name in values:
            params.warnings.append(
                OptimadeWarning("QueryParamNotUsed", f"{name} is not supported and was ignored; paginate with page_limit and page_offset")
            )
    params.filter = values.get("filter")
    params.response_fields = values.get("response_fields")
    params.sort = values.get("sort")
    if "page_limit" in values:
        params.page_limit = _integer("page_limit", values["page_limit"])
        if params.page_limit > config.page_limit_max:
            raise PageLimitTooLargeError(
                f"page_limit {params.page_limit} is larger than the maximum {config.page_limit_max}", parameter="page_limit"
            )
    if "page_offset" in values:
        params.page_offset = _integer("page_offset", values["page_offset"])
        if params.page_offset > _MAX_OFFSET:
            raise BadFilterError(f"page_offset {params.page_offset} is out of range (at most {_MAX_OFFSET})", parameter="page_offset")
    return params
