"""Deployments of campaigns: several schedules per campaign, served by this process or by
workers of a work pool; pause, resume and per-run parameter overrides through the Prefect API.

Two ways to run a deployment's flow runs:

* ``serve`` (:func:`serve_deployments`): this process registers the deployment and runs its
  flow runs until stopped: one command, one machine;
* a work pool (:func:`register_with_pool`): the deployment is registered with a ``process``
  work pool and this process exits; any number of ``prefect worker start --pool NAME`` processes,
  on any machine with crystaloop installed and the store reachable, pick its flow runs up and run
  each in a subprocess. Runs survive the registering process, and workers can be restarted or
  added without touching the deployment.

A campaign deployment is ``crystaloop-campaign/<name>``; its default parameters are the campaign
config (JSON), the store URL, the flow settings and ``iterations_per_run`` (``1`` with a nightly
cron advances the campaign one iteration per night; the store carries the state between runs).
Store URLs are stored with their password hidden; the serving process keeps the real one
(:func:`crystaloop.flows.parameters.deployment_store_url`). For workers on other machines, name a
Prefect Secret block holding the URL instead (``store_url_secret``): only its name is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from prefect import serve
from prefect.deployments import run_deployment

from crystaloop.data.errors import CrystaloopError
from crystaloop.data.store import resolve_store_url
from crystaloop.flows.campaign import campaign_flow
from crystaloop.flows.config import FlowSettings
from crystaloop.flows.parameters import deployment_store_url, redact_parameters, secret_reference
from crystaloop.loop.config import CampaignConfig

__all__ = ["FLOW_NAME", "build_deployment", "serve_deployments", "register_with_pool", "set_paused", "trigger", "deployment_name"]

logger = logging.getLogger(__name__)

FLOW_NAME = "crystaloop-campaign"


def deployment_name(name: str) -> str:
    """The full ``flow/deployment`` name of a campaign deployment called ``name``."""
    return name if "/" in name else f"{FLOW_NAME}/{name}"


def _check_cron(cron: str) -> str:
    from prefect.client.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    try:
        CronSchedule(cron=cron)
    except ValidationError:
        raise CrystaloopError(f"not a cron expression: {cron!r}; expected five fields such as '0 2 * * *' (02:00 daily)") from None
    return cron


def build_deployment(
    config: CampaignConfig,
    *,
    name: str | None = None,
    crons: Sequence[str] = (),
    intervals_s: Sequence[float] = (),
    store_url: str | None = None,
    settings: FlowSettings | None = None,
    iterations_per_run: int | None = 1,
    paused: bool = False,
    timezone: str = "UTC",
    store_url_secret: str | None = None,
) -> Any:
    """A ``RunnerDeployment`` of :func:`~crystaloop.flows.campaign.campaign_flow` for ``config``
    with one schedule per cron expression and per interval (none → runs only when triggered).

    With ``store_url_secret`` (the name of a Prefect Secret block holding the store URL) the
    deployment stores that name and no store URL; ``store_url`` must then be unset.

    Raises:
        CrystaloopError: a cron expression is invalid (named in the message), a bad Secret block
            name, or both ``store_url`` and ``store_url_secret`` given.
    """
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron, Interval

    schedules = [Cron(_check_cron(c), timezone=timezone) for c in crons] + [Interval(float(s)) for s in intervals_s]
    if store_url_secret is not None and store_url is not None:
        raise CrystaloopError(f"give the store as a URL or as Secret block {store_url_secret!r}, not both")
    parameters: dict[str, Any] = {
        "config": redact_parameters(config.explicit_settings()),
        "store_url": None if store_url_secret else deployment_store_url(resolve_store_url(store_url or config.store_url)),
        "settings": (settings or FlowSettings()).model_dump(mode="json"),
        "iterations_per_run": iterations_per_run,
    }
    if store_url_secret is not None:
        secret_reference(store_url_secret)  # a valid block name, or CrystaloopError
        parameters["store_url_secret"] = store_url_secret
    return campaign_flow.to_deployment(
        name=name or config.name,
        schedules=schedules or None,
        paused=paused,
        parameters=parameters,
        # one run of a campaign at a time: runs of one store must not interleave
        concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE),
        tags=["crystaloop", f"campaign:{config.name}"],
        description=f"crystaloop campaign {config.name} (config {config.config_hash()})",
        version=config.config_hash(),
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def serve_deployments(*deployments: Any, limit: int | None = None) -> None:
    """Register the deployments and run their flow runs from this process until interrupted
    (schedules are paused when it stops)."""
    serve(*deployments, limit=limit, print_starting_message=False)


def register_with_pool(deployment: Any, pool: str, *, create: bool = True) -> Any:
    """Register ``deployment`` with the ``process`` work pool ``pool`` (created when missing and
    ``create``); returns the deployment id. Start workers with ``prefect worker start --pool <pool>``.

    Raises:
        CrystaloopError: the pool does not exist and ``create`` is false, or it exists with another
            worker type (named in the message).
    """
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            existing = client.read_work_pool(pool)
        except ObjectNotFound:
            if not create:
                names = sorted(p.name for p in client.read_work_pools())
                raise CrystaloopError(f"no work pool {pool!r}; work pools: {', '.join(names) or 'none'}") from None
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
            logger.info("created process work pool %s", pool)
        else:
            if existing.type != "process":
                raise CrystaloopError(f"work pool {pool!r} has worker type {existing.type!r}; campaign deployments need a "
                                      "'process' pool (crystaloop runs in the worker's Python environment)")
    deployment_id = deployment.apply(work_pool_name=pool)
    logger.info("deployment %s registered with work pool %s", deployment_name(deployment.name), pool)
    return deployment_id


def set_paused(name: str, paused: bool) -> None:
    """Pause (no new scheduled runs) or resume the deployment called ``name``.

    Raises:
        CrystaloopError: no deployment has that name.
    """
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    full = deployment_name(name)
    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(full)
        except ObjectNotFound:
            names = sorted(f"{FLOW_NAME}/{d.name}" for d in client.read_deployments())
            raise CrystaloopError(f"no deployment {full!r}; deployments: {', '.join(names) or 'none'}") from None
        if paused:
            client.pause_deployment(deployment.id)
        else:
            client.resume_deployment(deployment.id)
    logger.info("deployment %s %s", full, "paused" if paused else "resumed")


def trigger(name: str, overrides: dict[str, Any] | None = None, *, iterations_per_run: int | None = None, timeout_s: float | None = 0) -> Any:
    """Start a run of the deployment ``name`` now, with ``overrides`` merged into its campaign
    config for this run only; waits up to ``timeout_s`` (``0`` → returns at once, ``None`` →
    until it ends). Returns the flow run."""
    parameters: dict[str, Any] = {}
    if overrides:
        parameters["overrides"] = overrides
    if iterations_per_run is not None:
        parameters["iterations_per_run"] = iterations_per_run
    return run_deployment(deployment_name(name), parameters=parameters, timeout=timeout_s)
