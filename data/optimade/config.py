"""`OptimadeConfig`: how the OPTIMADE API serves the store (page sizes, provider, limits)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from crystaloop.data.optimade.filters import MAX_FILTER_LENGTH

__all__ = ["OptimadeConfig", "API_VERSION", "SCHEMA_URL"]

API_VERSION = "1.2.0"
"""The OPTIMADE specification version this server implements."""
SCHEMA_URL = "https://schemas.optimade.org/openapi/v1.2/optimade.json"


class OptimadeConfig(BaseModel):
    """Settings of the OPTIMADE server.

    Attributes:
        base_url: public URL of the unversioned base (``https://example.org/optimade``); ``None``
            takes it from each request (right behind no proxy, e.g. loopback).
        page_limit: results per page when the request gives no ``page_limit``.
        page_limit_max: largest ``page_limit`` accepted; larger requests get HTTP 403.
        max_filter_length: longest ``filter`` accepted, characters (HTTP 400 beyond).
        max_param_length: longest value of any other query parameter, characters.
        statement_timeout_s: PostgreSQL statement timeout, seconds (HTTP 503 when exceeded).
        total_ttl_s: how long ``meta.data_available`` (a full count) is cached, seconds.
        provider_name, provider_description, provider_homepage: ``meta.provider``; the prefix is
            always ``crystaloop`` (provider fields are ``_crystaloop_…``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str | None = None
    page_limit: int = Field(20, ge=1)
    page_limit_max: int = Field(1000, ge=1)
    max_filter_length: int = Field(MAX_FILTER_LENGTH, ge=10)
    max_param_length: int = Field(4096, ge=10)
    statement_timeout_s: float | None = Field(30.0, gt=0)
    total_ttl_s: float = Field(5.0, ge=0)
    provider_name: str = "crystaloop"
    provider_description: str = "Candidate crystals of crystaloop closed-loop materials design campaigns"
    provider_homepage: str | None = None

    @model_validator(mode="after")
    def _limits(self) -> OptimadeConfig:
        if self.page_limit > self.page_limit_max:
            raise ValueError(f"page_limit {self.page_limit} exceeds page_limit_max {self.page_limit_max}")
        if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {self.base_url!r}")
        return self
