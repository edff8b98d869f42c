"""``crystaloop serve``: the store as a read-only OPTIMADE v1.2 API."""

from __future__ import annotations

from typing import Annotated, Optional  # noqa: UP035 - typer needs Optional on 3.11

import typer

from crystaloop.commands.common import StoreOption, err_console, exit_on_error

__all__ = ["serve"]


def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 5000,
    store: StoreOption = None,
    page_limit_max: Annotated[int, typer.Option("--page-limit-max", min=1, help="Largest page_limit accepted (403 beyond).")] = 1000,
    base_url: Annotated[Optional[str], typer.Option("--base-url", help="Public URL of the API when behind a proxy.")] = None,  # noqa: UP045
    workers: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--workers", min=1, max=64, help="Server processes (uvicorn workers); default one per core, at most 4."),
    ] = None,
) -> None:
    """Serve the store as a read-only OPTIMADE v1.2 API (/v1/info, /v1/structures …) with uvicorn.

    Without ``--workers`` it starts one server process per core of the machine, 1 to 4
    (:func:`~crystaloop.data.optimade.config.default_workers`).
    """
    import os

    import uvicorn

    from crystaloop.data.optimade.app import CONFIG_ENV_VAR, create_app
    from crystaloop.data.optimade.config import OptimadeConfig, default_workers
    from crystaloop.data.store import ENV_VAR, existing_store_url, redact_url

    with exit_on_error(invalid="bad server settings: "):
        config = OptimadeConfig(page_limit_max=page_limit_max, page_limit=min(20, page_limit_max), base_url=base_url)
        url = existing_store_url(store)  # serves what exists; never creates a store
        api = create_app(url, config=config)  # opens (and migrates) the store once, before any worker
    workers = workers if workers is not None else default_workers()
    err_console.print(
        f"OPTIMADE API for {redact_url(url)}: http://{host}:{port}/v1/info, {workers} worker(s) (Ctrl-C stops)", highlight=False
    )
    if workers == 1:
        uvicorn.run(api, host=host, port=port, log_level="warning", access_log=False)
        return
    os.environ[ENV_VAR] = url  # each worker process builds its own app from these
    os.environ[CONFIG_ENV_VAR] = config.model_dump_json()
    target = "crystaloop.data.optimade.app:app_from_environment"
    uvicorn.run(target, factory=True, workers=workers, host=host, port=port, log_level="warning", access_log=False)
