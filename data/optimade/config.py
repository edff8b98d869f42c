"""`OptimadeConfig`: how the OPTIMADE API serves the store (page sizes, provider, limits)."""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field, model_validator

from crystaloop.data.optimade.filters import MAX_ALL_VALUES, MAX_FILTER_LENGTH, MAX_LIST_VALUES, MAX_PROBES

__all__ = ["OptimadeConfig", "API_VERSION", "SCHEMA_URL", "MAX_DEFAULT_WORKERS", "default_workers"]

API_VERSION = "1.2.0"
"""The OPTIMADE specification version this server implements."""
SCHEMA_URL = "https://schemas.optimade.org/openapi/v1.2/optimade.json"
MAX_DEFAULT_WORKERS = 4
"""Most server processes started by default: each holds its own pool of up to ``pool_size +
max_overflow`` (16) connections, and four fill 64 of PostgreSQL's default 100."""


def default_workers(cpu_count: int | None = None) -> int:
    """Server processes ``crystaloop serve`` starts without ``--workers``: one per core, 1 to 4.

    Args:
        cpu_count: cores of the machine (default ``os.cpu_count()``; unknown counts as 1).
    """
    cores = os.cpu_count() if cpu_count is None else cpu_count
    return max(1, min(cores or 1, MAX_DEFAULT_WORKERS))


class OptimadeConfig(BaseModel):
    """Settings of the OPTIMADE server.

    Attributes:
        base_url: public URL of the unversioned base (``https://example.org/optimade``); ``None``
            takes it from each request (right behind no proxy, e.g. loopback).
        page_limit: results per page when the request gives no ``page_limit``.
        page_limit_max: largest ``page_limit`` accepted; larger requests get HTTP 403.
        max_filter_length: longest ``filter`` accepted, characters (HTTP 400 beyond).
        max_param_length: longest value of any other query parameter, characters.
        statement_timeout_s: budget of one request's SQL, seconds (HTTP 503 when exceeded):
            ``SET LOCAL statement_timeout`` on PostgreSQL, a progress handler on SQLite.
        total_ttl_s: how long ``meta.data_available`` (a full count) is cached, seconds.
        max_all_values, max_list_values, max_probes: filter cost limits (HTTP 400 beyond): distinct
            values of a ``HAS ALL`` list or zip, of any list, and child-table probes per filter.
        expensive_cost: filter cost from which a search is *expensive* (see ``max_expensive``).
        max_expensive: expensive searches served at once; more wait ``expensive_wait_s``, then
            get HTTP 503 with ``Retry-After``. Fewer than the connections, so cheap ones always run.
        pool_size, max_overflow: database connections kept, and opened beyond them under load.
        pool_timeout_s: longest wait for a free connection before HTTP 503 with ``Retry-After``.
        max_in_flight: requests served at once by one process; beyond, HTTP 503 at once.
        retry_after_s: the ``Retry-After`` of overload answers, seconds.
        response_cache_ttl_s: how long a ``/structures`` answer is reused for the same query (0: never).
        response_cache_size: most answers kept.
        count_cache_size: filters whose exact ``meta.data_returned`` is reused until the store
            is next written (:mod:`crystaloop.data.optimade.counts`; 0: count every request).
        provider_name, provider_description, provider_homepage: ``meta.provider``; the prefix is
            always ``crystaloop`` (provider fields are ``_crystaloop_…``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str | None = None
    page_limit: int = Field(20, ge=1)
    page_limit_max: int = Field(1000, ge=1)
    max_filter_length: int = Field(MAX_FILTER_LENGTH, ge=10)
    max_param_length: int = Field(4096, ge=10)
    statement_timeout_s: float | None = Field(5.0, gt=0)
    total_ttl_s: float = Field(5.0, ge=0)
    max_all_values: int = Field(MAX_ALL_VALUES, ge=1)
    max_list_values: int = Field(MAX_LIST_VALUES, ge=1)
    max_probes: int = Field(MAX_PROBES, ge=1)
    expensive_cost: int = Field(3, ge=1)
    max_expensive: int = Field(4, ge=1)
    expensive_wait_s: float = Field(0.25, ge=0)
    pool_size: int = Field(8, ge=1)
    max_overflow: int = Field(8, ge=0)
    pool_timeout_s: float = Field(2.0, gt=0)
    max_in_flight: int = Field(64, ge=1)
    retry_after_s: int = Field(1, ge=1)
    response_cache_ttl_s: float = Field(2.0, ge=0)
    response_cache_size: int = Field(1024, ge=1)
    count_cache_size: int = Field(4096, ge=0)
    provider_name: str = "crystaloop"
    provider_description: str = "Candidate crystals of crystaloop closed-loop materials design campaigns"
    provider_homepage: str | None = None

    @model_validator(mode="after")
    def _limits(self) -> OptimadeConfig:
        if self.page_limit > self.page_limit_max:
            raise ValueError(f"page_limit {self.page_limit} exceeds page_limit_max {self.page_limit_max}")
        if self.max_expensive >= self.pool_size + self.max_overflow:
            raise ValueError(
                f"max_expensive {self.max_expensive} must be below pool_size + max_overflow "
                f"({self.pool_size + self.max_overflow}) so that cheap queries keep a connection"
            )
        if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {self.base_url!r}")
        return self
