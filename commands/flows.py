"""Campaigns under Prefect from the command line.

* ``crystaloop server start`` — a local Prefect server and UI on 127.0.0.1 (:data:`server_app`).
* ``crystaloop campaign deploy CONFIG --cron "0 2 * * *" [--cron ...] [--name N]`` — register a
  deployment with its schedules and serve it from this process (:func:`deploy`).
* ``crystaloop campaign pause|resume NAME`` and ``crystaloop campaign trigger NAME --set
  budget.iterations=4`` (:func:`pause`, :func:`resume`, :func:`trigger`).
* ``crystaloop campaign flow CONFIG`` — one run of the campaign flow now (:func:`flow_run`).

Prefect is imported inside the commands only, so ``crystaloop --help`` stays fast.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Any, Optional  # noqa: UP035 - typer needs Optional on 3.11

import typer

from crystaloop.commands.common import console, err_console, exit_on_error, fail

__all__ = ["server_app", "deploy", "pause", "resume", "trigger", "flow_run", "parse_overrides"]

logger = logging.getLogger(__name__)

server_app = typer.Typer(help="The local Prefect server and UI that campaigns report to.", no_args_is_help=True)

StoreOption = Annotated[Optional[str], typer.Option("--store", help="SQLAlchemy URL of the store; default: the config's store_url, then $CRYSTALOOP_DB_URL, then sqlite:///crystaloop.db.")]  # noqa: UP045
SetOption = Annotated[Optional[list[str]], typer.Option("--set", help="Override a campaign setting for this run: KEY=VALUE with a dotted key (budget.iterations=4); repeatable.")]  # noqa: UP045


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """``["budget.iterations=4", "strategy.kind=bo"]`` → ``{"budget.iterations": 4, ...}``
    (values read as YAML scalars)."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise fail(f"--set {pair!r}: expected KEY=VALUE, e.g. budget.iterations=4")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise fail(f"--set {pair!r}: the value is not a YAML scalar ({exc})") from None
    return out


@server_app.command("start")
def server_start(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on (loopback: only this machine).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port of the API and UI.")] = 4200,
    home: Annotated[Optional[Path], typer.Option("--home", help="PREFECT_HOME for the server's database and logs (default: Prefect's ~/.prefect).")] = None,  # noqa: UP045
    database_url: Annotated[Optional[str], typer.Option("--database-url", help="postgresql+asyncpg://user:pw@host/db; default $PREFECT_API_DATABASE_CONNECTION_URL, else SQLite under the home.")] = None,  # noqa: UP045
    timeout: Annotated[float, typer.Option("--timeout", min=1.0, help="Seconds to wait for the server to answer.")] = 180.0,
) -> None:
    """Start a local Prefect server (API + UI), wait until it answers, then keep it running until Ctrl-C."""
    from crystaloop.commands.logs import adopt_prefect_logging
    from crystaloop.flows.server import ServerSettings, start_server, wait_until_healthy

    adopt_prefect_logging()

    settings = ServerSettings(host=host, port=port, home=str(home) if home else None, database_url=database_url or os.environ.get("PREFECT_API_DATABASE_CONNECTION_URL"))
    log_dir = Path(settings.home or Path.home() / ".prefect")
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "crystaloop-server.log"
    import signal
    import sys

    process = start_server(settings, log_path=log_path)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a terminated command stops its server too
    with exit_on_error():  # the server stops before the error line
        try:
            waited = wait_until_healthy(settings, process, timeout=timeout, log_path=log_path)
            console.print(f"Prefect server ready after {waited:.0f} s: UI {settings.ui_url}  API {settings.api_url}", highlight=False)
            console.print(f"clients: export PREFECT_API_URL={settings.api_url}   (server log: {log_path})", highlight=False)
            process.wait()
        except KeyboardInterrupt:
            err_console.print("stopping the Prefect server")
        finally:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=30)


def _runner(kind: str, dask_address: str | None) -> dict[str, str]:
    """The ``runner`` settings of ``--runner`` and ``--dask-address`` (an address needs ``dask``)."""
    from crystaloop.data.errors import CrystaloopError

    if dask_address is not None and kind != "dask":
        raise CrystaloopError(f"--dask-address {dask_address!r} needs --runner dask (got --runner {kind!r})")
    return {"kind": kind} if dask_address is None else {"kind": kind, "address": dask_address}


def deploy(
    config: Annotated[Path, typer.Argument(help="Campaign YAML (see examples/).")],
    cron: Annotated[Optional[list[str]], typer.Option("--cron", help='Cron schedule, e.g. "0 2 * * *" (02:00 daily); repeatable for several schedules.')] = None,  # noqa: UP045
    interval: Annotated[Optional[list[float]], typer.Option("--interval", min=1.0, help="Interval schedule in seconds; repeatable.")] = None,  # noqa: UP045
    name: Annotated[Optional[str], typer.Option("--name", help="Deployment name (default: the campaign's name).")] = None,  # noqa: UP045
    store: StoreOption = None,
    iterations_per_run: Annotated[int, typer.Option("--iterations-per-run", min=0, help="New iterations per scheduled run (0: all remaining).")] = 1,
    runner: Annotated[str, typer.Option("--runner", help="Task runner: threads | dask.")] = "threads",
    oracle_concurrency: Annotated[Optional[int], typer.Option("--oracle-concurrency", min=1, help="Most oracle calls at once (tag concurrency limit).")] = None,  # noqa: UP045
    paused: Annotated[bool, typer.Option("--paused", help="Register with schedules paused.")] = False,
    timezone: Annotated[str, typer.Option("--timezone", help="Time zone of the cron schedules.")] = "UTC",
    pool: Annotated[Optional[str], typer.Option("--pool", help="Register with this process work pool (created if missing) and exit; run it with `prefect worker start --pool NAME`.")] = None,  # noqa: UP045
    dask_address: Annotated[Optional[str], typer.Option("--dask-address", help="With --runner dask: scheduler of an existing Dask cluster (tcp://host:8786) instead of a local one.")] = None,  # noqa: UP045
    store_url_secret: Annotated[Optional[str], typer.Option("--store-url-secret", help="Name of a Prefect Secret block holding the store URL; runs load it, no URL is stored with the deployment.")] = None,  # noqa: UP045
) -> None:
    """Register a deployment of the campaign flow with its schedules and serve it until Ctrl-C, or
    (--pool) register it with a work pool whose workers run it."""
    from crystaloop.commands.logs import adopt_prefect_logging
    from crystaloop.flows.config import FlowSettings
    from crystaloop.flows.deploy import build_deployment, deployment_name, register_with_pool, serve_deployments
    from crystaloop.loop.config import load_campaign_config

    adopt_prefect_logging()
    with exit_on_error(invalid="bad flow settings: "):
        campaign = load_campaign_config(config)
        settings = FlowSettings(runner=_runner(runner, dask_address), oracle_concurrency=oracle_concurrency)
        deployment = build_deployment(
            campaign, name=name, crons=cron or (), intervals_s=interval or (), store_url=store, settings=settings,
            iterations_per_run=iterations_per_run or None, paused=paused, timezone=timezone, store_url_secret=store_url_secret,
        )
    schedules = ", ".join([*(cron or ()), *(f"every {s:g} s" for s in interval or ())]) or "none (trigger runs by hand)"
    if pool is not None:
        with exit_on_error():
            register_with_pool(deployment, pool)
        console.print(f"registered {deployment_name(deployment.name)} with work pool {pool}; schedules: {schedules}. "
                      f"Run its flow runs with: prefect worker start --pool {pool}", highlight=False)
        return
    err_console.print(f"serving {deployment_name(deployment.name)}; schedules: {schedules}; Ctrl-C stops (schedules pause)", highlight=False)
    serve_deployments(deployment)


def _set_paused(name: str, paused: bool) -> None:
    from crystaloop.commands.logs import adopt_prefect_logging
    from crystaloop.flows.deploy import deployment_name, set_paused

    adopt_prefect_logging()

    with exit_on_error():
        set_paused(name, paused)
    console.print(f"{deployment_name(name)}: {'paused' if paused else 'resumed'}")


def pause(name: Annotated[str, typer.Argument(help="Deployment name (the campaign's name unless --name was given).")]) -> None:
    """Pause a campaign deployment's schedules."""
    _set_paused(name, True)


def resume(name: Annotated[str, typer.Argument(help="Deployment name.")]) -> None:
    """Resume a paused campaign deployment's schedules."""
    _set_paused(name, False)


def trigger(
    name: Annotated[str, typer.Argument(help="Deployment name.")],
    overrides: SetOption = None,
    iterations: Annotated[Optional[int], typer.Option("--iterations-per-run", min=1, help="New iterations in this run.")] = None,  # noqa: UP045
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the run to finish and exit non-zero if it failed.")] = False,
) -> None:
    """Start a run of a deployed campaign now, with settings overridden for this run only."""
    from crystaloop.commands.logs import adopt_prefect_logging
    from crystaloop.flows.deploy import trigger as start_run

    adopt_prefect_logging()

    run = start_run(name, parse_overrides(overrides), iterations_per_run=iterations, timeout_s=None if wait else 0)
    console.print(f"flow run {run.name} ({run.id}): {run.state.name if run.state else 'scheduled'}", highlight=False)
    if wait and not (run.state and run.state.is_completed()):
        raise typer.Exit(code=1)


def flow_run(
    config: Annotated[Path, typer.Argument(help="Campaign YAML.")],
    store: StoreOption = None,
    overrides: SetOption = None,
    runner: Annotated[str, typer.Option("--runner", help="Task runner: threads | dask.")] = "threads",
    threads: Annotated[int, typer.Option("--threads", min=1, help="torch CPU threads.")] = 1,
    dask_address: Annotated[Optional[str], typer.Option("--dask-address", help="With --runner dask: scheduler of an existing Dask cluster (tcp://host:8786) instead of a local one.")] = None,  # noqa: UP045
) -> None:
    """Run the campaign's remaining iterations through the Prefect flow now (a temporary local
    server when PREFECT_API_URL is unset)."""
    import torch

    from crystaloop.commands.logs import adopt_prefect_logging
    from crystaloop.flows.campaign import campaign_flow
    from crystaloop.flows.config import FlowSettings
    from crystaloop.loop.config import load_campaign_config
    from crystaloop.loop.sun import campaign_sun

    adopt_prefect_logging()

    torch.set_num_threads(threads)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    with exit_on_error(invalid="bad flow settings: "):
        campaign = load_campaign_config(config)
        settings = FlowSettings(runner=_runner(runner, dask_address))
        reports = campaign_flow(campaign, store_url=store, overrides=parse_overrides(overrides), settings=settings)
    for r in reports:
        sun = "" if r.sun is None else f", S.U.N. {r.sun.sun} / {r.sun.sun_strict}"
        console.print(f"iteration {r.iteration}: {r.generated} generated, {r.evaluated} evaluated, {len(r.verified_hits)} verified hits{sun}", highlight=False)
    total = campaign_sun(r.sun for r in reports)
    if total is not None:
        console.print(f"campaign {campaign.name}: {total.describe()}", highlight=False)
