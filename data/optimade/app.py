"""The OPTIMADE v1.2 API over the candidate store (FastAPI; read-only).

Endpoints, under the unversioned base and under ``/v1``, ``/v1.2`` and ``/v1.2.0``::

    /info  /info/structures  /links  /structures  /structures/{id}      (JSON:API, OPTIMADE meta)
    /versions                                                           (unversioned only, text/csv)

Errors are OPTIMADE error documents: 400 (bad filter or parameter), 403 (``page_limit`` above the
maximum), 404 (no such entry or endpoint), 501 (valid OPTIMADE we do not support), 553 (an API
version we do not serve), 503 (the request ran past its time budget, or the server is saturated:
then with ``Retry-After``). The store is opened (and migrated) once when the app is created, then
read through an engine that cannot write.

Under load nothing queues without bound: at most ``max_in_flight`` requests are served at once
(503 beyond, before a worker thread is taken), expensive filters share ``max_expensive`` slots
(503 after ``expensive_wait_s``), a connection not free within ``pool_timeout_s`` is a 503, and
every request's SQL runs within ``statement_timeout_s`` (see :class:`OptimadeConfig`). Repeated
``/structures`` queries are answered from a small cache for ``response_cache_ttl_s``.

Run with ``crystaloop serve`` or::

    uvicorn --factory crystaloop.data.optimade.app:app_from_environment
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, MutableMapping, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from crystaloop import __version__
from crystaloop.data.errors import CrystaloopError
from crystaloop.data.optimade.config import API_VERSION, SCHEMA_URL, OptimadeConfig
from crystaloop.data.optimade.entries import parse_response_fields
from crystaloop.data.optimade.errors import (
    BadFilterError,
    EntryNotFoundError,
    OptimadeRequestError,
    OptimadeWarning,
    OverloadedError,
    VersionNotSupportedError,
)
from crystaloop.data.optimade.fields import PROVIDER_PREFIX, entry_info_properties
from crystaloop.data.optimade.limits import InFlightLimit, QueryLimiter
from crystaloop.data.optimade.params import ListingParams, parse_params
from crystaloop.data.optimade.search import StructureSearch, open_readonly_engine
from crystaloop.data.store.engine import redact_url, resolve_store_url

__all__ = ["create_app", "app_from_environment", "CONFIG_ENV_VAR", "VERSION_PREFIXES", "OptimadeJSONResponse"]

logger = logging.getLogger(__name__)

VERSION_PREFIXES = ("", "/v1", "/v1.2", "/v1.2.0")
_VERSIONED = re.compile(r"^/v(\d+)(\.\d+){0,2}(/|$)")
_STATUS_TITLES = {404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}


class OptimadeJSONResponse(JSONResponse):
    """JSON:API media type, serialised with orjson (NaN and ±inf become ``null``)."""

    media_type = "application/vnd.api+json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class _ResponseCache:
    """Answers of recent ``/structures`` queries, reused for ``ttl_s`` (thread-safe LRU)."""

    def __init__(self, ttl_s: float, size: int) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._items: OrderedDict[tuple[str, ...], tuple[float, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...]) -> dict[str, Any] | None:
        if self.ttl_s <= 0:
            return None
        with self._lock:
            item = self._items.get(key)
            if item is None or time.monotonic() - item[0] > self.ttl_s:
                return None
            self._items.move_to_end(key)
            return item[1]

    def put(self, key: tuple[str, ...], content: dict[str, Any]) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            self._items[key] = (time.monotonic(), content)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


class _Api:
    """Request handlers bound to one store and configuration."""

    def __init__(self, search: StructureSearch, config: OptimadeConfig) -> None:
        self.search = search
        self.config = config
        self.properties = entry_info_properties()
        self.cache = _ResponseCache(config.response_cache_ttl_s, config.response_cache_size)

    # ------------------------------------------------------------------ helpers
    def root(self, request: Request) -> str:
        """Public unversioned base URL (no trailing slash)."""
        if self.config.base_url:
            return self.config.base_url.rstrip("/")
        return str(request.base_url).rstrip("/")

    def meta(
        self,
        request: Request,
        *,
        returned: int | None,
        available: int | None,
        more: bool,
        warnings: Sequence[OptimadeWarning] = (),
    ) -> dict[str, Any]:
        path = _VERSIONED.sub("/", request.url.path, count=1)
        meta: dict[str, Any] = {
            "query": {"representation": f"{path}?{request.url.query}"},
            "api_version": API_VERSION,
            "more_data_available": more,
            "schema": SCHEMA_URL,
            "time_stamp": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
            "data_returned": returned,
            "data_available": available,
            "provider": {
                "name": self.config.provider_name,
                "description": self.config.provider_description,
                "prefix": PROVIDER_PREFIX,
                "homepage": self.config.provider_homepage,
            },
            "implementation": {"name": "crystaloop", "version": __version__},
        }
        unique = list(dict.fromkeys(warnings))
        if unique:
            meta["warnings"] = [w.as_json() for w in unique]
        return meta

    def link(self, request: Request, prefix: str, tail: str, query: dict[str, str] | None = None) -> str:
        url = f"{self.root(request)}{prefix}{tail}"
        return f"{url}?{urlencode(query)}" if query else url

    def params(self, request: Request, endpoint: str) -> ListingParams:
        return parse_params(request.query_params.multi_items(), endpoint, self.config)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ endpoints
    def info(self, request: Request, prefix: str) -> Response:
        params = self.params(request, "info")
        data = {
            "id": "/",
            "type": "info",
            "attributes": {
                "api_version": API_VERSION,
                "available_api_versions": [{"url": f"{self.root(request)}/v1", "version": API_VERSION}],
                "formats": ["json"],
                "available_endpoints": ["info", "links", "structures"],
                "entry_types_by_format": {"json": ["structures"]},
                "is_index": False,
            },
        }
        meta = self.meta(request, returned=1, available=1, more=False, warnings=params.warnings)
        return OptimadeJSONResponse({"data": data, "meta": meta, "links": {"self": str(request.url)}})

    def entry_info(self, request: Request, prefix: str, entry: str) -> Response:
        params = self.params(request, "info")
        if entry != "structures":
            raise EntryNotFoundError(f"no entry info for {entry[:50]!r}; this server has: structures")
        data = {
            "id": "structures",
            "type": "info",
            "description": "Candidate crystals of the crystaloop store: generated, scored and evaluated structures.",
            "properties": self.properties,
            "formats": ["json"],
            "output_fields_by_format": {"json": list(self.properties)},
        }
        meta = self.meta(request, returned=1, available=1, more=False, warnings=params.warnings)
        return OptimadeJSONResponse({"data": data, "meta": meta})

    def links(self, request: Request, prefix: str) -> Response:
        params = self.params(request, "listing")
        meta = self.meta(request, returned=0, available=0, more=False, warnings=params.warnings)
        return OptimadeJSONResponse({"data": [], "meta": meta, "links": {"next": None}})

    def structures(self, request: Request, prefix: str) -> Response:
        key = (prefix, self.root(request), request.url.query)
        content = self.cache.get(key)
        if content is None:
            content = self._structures(request, prefix)
            self.cache.put(key, content)
        return OptimadeJSONResponse(content)

    def _structures(self, request: Request, prefix: str) -> dict[str, Any]:
        params = self.params(request, "listing")
        warnings = list(params.warnings)
        fields = parse_response_fields(params.response_fields, warnings)
        page = self.search.search(
            params.filter,
            sort=params.sort,
            limit=params.page_limit,
            offset=params.page_offset,
            fields=fields,
            link=lambda cid: self.link(request, prefix, f"/structures/{cid}"),
        )
        warnings += page.warnings
        next_link = None
        if page.more_data_available and params.page_limit > 0:
            query = dict(request.query_params)
            query["page_offset"] = str(params.page_offset + params.page_limit)
            query["page_limit"] = str(params.page_limit)
            next_link = self.link(request, prefix, "/structures", query)
        meta = self.meta(
            request, returned=page.data_returned, available=page.data_available, more=page.more_data_available, warnings=warnings
        )
        return {"data": page.documents, "meta": meta, "links": {"next": next_link}}

    def structure(self, request: Request, prefix: str, entry_id: str) -> Response:
        params = self.params(request, "single")
        warnings = list(params.warnings)
        fields = parse_response_fields(params.response_fields, warnings)
        if "\x00" in entry_id or len(entry_id) > 256:
            raise EntryNotFoundError(f"no structure with id {entry_id[:80]!r}")
        document, total = self.search.get(entry_id, fields=fields)
        if document is None:
            raise EntryNotFoundError(f"no structure with id {entry_id[:80]!r}")
        meta = self.meta(request, returned=1, available=total, more=False, warnings=warnings)
        return OptimadeJSONResponse({"data": document, "meta": meta, "links": {"self": str(request.url)}})

    # ------------------------------------------------------------------ errors
    def error(
        self, request: Request, status: int, title: str, detail: str, parameter: str | None = None, retry_after: int | None = None
    ) -> Response:
        error: dict[str, Any] = {"status": str(status), "title": title, "detail": detail}
        if parameter:
            error["source"] = {"parameter": parameter}
        meta = self.meta(request, returned=0, available=None, more=False)
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return OptimadeJSONResponse({"errors": [error], "meta": meta}, status_code=status, headers=headers)

    def overloaded(self, scope: MutableMapping[str, Any]) -> Response:
        """The 503 of a request refused because ``max_in_flight`` requests are being served."""
        exc = OverloadedError(
            f"{self.config.max_in_flight} requests are being served; retry in {self.config.retry_after_s} s",
            retry_after=self.config.retry_after_s,
        )
        return self.error(Request(scope), exc.status, exc.title, exc.detail, retry_after=exc.retry_after)


def _routes(api: _Api, prefix: str) -> dict[str, Callable[..., Response]]:
    """Endpoint functions for one version prefix (explicit signatures, so FastAPI sees path parameters)."""

    def info(request: Request) -> Response:
        return api.info(request, prefix)

    def entry_info(request: Request, entry: str) -> Response:
        return api.entry_info(request, prefix, entry)

    def links(request: Request) -> Response:
        return api.links(request, prefix)

    def structures(request: Request) -> Response:
        return api.structures(request, prefix)

    def structure(request: Request, entry_id: str) -> Response:
        return api.structure(request, prefix, entry_id)

    return {
        "/info": info,
        "/info/{entry}": entry_info,
        "/links": links,
        "/structures": structures,
        "/structures/{entry_id:path}": structure,
    }


def create_app(store_url: str | None = None, *, config: OptimadeConfig | None = None, migrate: bool = True) -> FastAPI:
    """The OPTIMADE app serving the store at ``store_url`` (default ``$CRYSTALOOP_DB_URL``).

    Args:
        store_url: store URL (SQLite file or PostgreSQL).
        config: server settings (defaults of :class:`OptimadeConfig`).
        migrate: bring the store's schema to this code's revision first (as every
            ``CandidateStore`` does); ``False`` requires it to be there already.

    Raises:
        StoreError: the store cannot be opened or is at another schema revision.
    """
    from crystaloop.data.store import CandidateStore

    config = config or OptimadeConfig()
    url = resolve_store_url(store_url)
    CandidateStore(url, migrate=migrate).close()  # creates or migrates; refuses unknown revisions
    engine = open_readonly_engine(
        url,
        statement_timeout_s=config.statement_timeout_s,
        pool_size=config.pool_size,
        max_overflow=config.max_overflow,
        pool_timeout=config.pool_timeout_s,
    )
    search = StructureSearch(
        engine,
        total_ttl_s=config.total_ttl_s,
        max_filter_length=config.max_filter_length,
        timeout_s=config.statement_timeout_s,
        limiter=QueryLimiter(config.max_expensive, wait_s=config.expensive_wait_s, retry_after_s=config.retry_after_s),
        expensive_cost=config.expensive_cost,
        filter_limits={"max_all_values": config.max_all_values, "max_list_values": config.max_list_values, "max_probes": config.max_probes},
        count_cache_size=config.count_cache_size,
    )
    api = _Api(search, config)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        logger.info("serving OPTIMADE for store %s", redact_url(url))
        yield
        engine.dispose()

    app = FastAPI(
        title="crystaloop OPTIMADE API",
        version=__version__,
        description="OPTIMADE v1.2 API over the crystaloop candidate store.",
        lifespan=lifespan,
        docs_url="/extensions/docs",
        redoc_url=None,
        openapi_url="/extensions/openapi.json",
    )
    app.state.api = api
    app.add_middleware(InFlightLimit, limit=config.max_in_flight, answer=api.overloaded)
    for prefix in VERSION_PREFIXES:
        for path, endpoint in _routes(api, prefix).items():
            app.add_api_route(f"{prefix}{path}", endpoint, methods=["GET"], include_in_schema=not prefix)

    @app.get("/versions", include_in_schema=False)
    def versions() -> Response:
        return Response("version\n1\n", media_type="text/csv; header=present")

    @app.exception_handler(OptimadeRequestError)
    def _optimade_error(request: Request, exc: OptimadeRequestError) -> Response:
        return api.error(request, exc.status, exc.title, exc.detail, exc.parameter, exc.retry_after)

    @app.exception_handler(StarletteHTTPException)
    def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        version = _VERSIONED.match(request.url.path)
        if exc.status_code == 404 and version and not any(
            request.url.path == p or request.url.path.startswith(f"{p}/") for p in VERSION_PREFIXES if p
        ):
            error = VersionNotSupportedError(
                f"API version in {request.url.path[:40]!r} is not served; this server serves v1 (OPTIMADE {API_VERSION})"
            )
            return api.error(request, error.status, error.title, error.detail)
        title = _STATUS_TITLES.get(exc.status_code, "Error")
        detail = str(exc.detail) if exc.status_code != 404 else f"no endpoint {request.url.path[:80]!r}"
        return api.error(request, exc.status_code, title, detail)

    @app.exception_handler(RequestValidationError)
    def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        error = BadFilterError(f"bad request: {exc.errors()[:3]}")
        return api.error(request, error.status, error.title, error.detail)

    @app.exception_handler(CrystaloopError)
    def _store_error(request: Request, exc: CrystaloopError) -> Response:
        logger.error("OPTIMADE request %s failed: %s", request.url.path, exc)
        return api.error(request, 500, "Internal Server Error", "the store could not answer this request")

    @app.exception_handler(Exception)
    def _unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("unexpected error answering %s", request.url.path)
        return api.error(request, 500, "Internal Server Error", f"unexpected {type(exc).__name__}")

    return app


CONFIG_ENV_VAR = "CRYSTALOOP_OPTIMADE_CONFIG"


def app_from_environment() -> FastAPI:
    """App factory for ``uvicorn --factory`` (and ``crystaloop serve --workers N``).

    The store comes from ``$CRYSTALOOP_DB_URL``, the settings from ``$CRYSTALOOP_OPTIMADE_CONFIG``
    (the JSON of an :class:`OptimadeConfig`; defaults when unset).
    """
    raw = os.environ.get(CONFIG_ENV_VAR, "").strip()
    return create_app(config=OptimadeConfig.model_validate_json(raw) if raw else None)
