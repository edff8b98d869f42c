"""The campaign as Prefect flows: :func:`campaign_flow` runs one :func:`iteration_flow` subflow per
remaining iteration; each subflow runs the engine's step table
(:data:`crystaloop.loop.campaign.ITERATION_STEPS`: generate → score → guard → select → evaluate →
report), each step as a task of its own name (:func:`crystaloop.flows.tasks.step`). Two steps get
more from Prefect, listed in :data:`FLOW_STEPS`: ``score`` is cached on the pending candidates,
and ``evaluate`` fans out one ``oracle`` task per selected candidate, each recorded by an
``update`` task as it finishes. A step added to the engine's table runs in the flow unchanged.

The store is the state: a flow run that failed or was killed is simply run again and continues
where the store says (finished iterations are read back, an unfinished one resumes step by step),
so no candidate is lost or measured twice into a duplicate. Oracle calls go to the task runner in
parallel (threads by default, Dask for scale-out, :class:`~crystaloop.flows.config.RunnerSettings`);
everything else runs in order in the flow's own thread, and every store write happens there too.

Both flows store their runs' parameters with store-URL passwords hidden
(:mod:`crystaloop.flows.parameters`); the runs themselves get the real URL.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff

from crystaloop.data.errors import CrystaloopError, OracleError
from crystaloop.data.store import resolve_store_url
from crystaloop.flows import artifacts, tasks
from crystaloop.flows.config import FlowSettings, RetrySettings, RunnerSettings, merge_overrides
from crystaloop.flows.parameters import redacting, reveal_store_url, secret_reference
from crystaloop.flows.runtime import store_for
from crystaloop.loop.campaign import ITERATION_STEPS, IterationRun, Step, iteration_candidates
from crystaloop.loop.config import CampaignConfig
from crystaloop.loop.report import IterationReport

__all__ = ["campaign_flow", "iteration_flow", "make_task_runner", "resolve_config", "finished_reports", "ensure_oracle_limit", "FLOW_STEPS"]

logger = logging.getLogger(__name__)


def make_task_runner(settings: RunnerSettings) -> Any:
    """The task runner ``settings`` ask for (prefect-dask is imported only for ``dask``)."""
    if settings.kind == "threads":
        return ThreadPoolTaskRunner(max_workers=settings.max_workers)
    from prefect_dask import DaskTaskRunner

    if settings.address:
        return DaskTaskRunner(address=settings.address)
    cluster = {"n_workers": settings.n_workers, "threads_per_worker": settings.threads_per_worker, "processes": settings.processes, "dashboard_address": None}
    return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs=cluster)


def resolve_config(config: CampaignConfig | dict[str, Any], overrides: dict[str, Any] | None = None) -> CampaignConfig:
    """``config`` with per-run ``overrides`` merged in (nested or dotted keys), validated again.

    Raises:
        CrystaloopError: the result is not a valid campaign (the message names the field).
    """
    from pydantic import ValidationError

    from crystaloop.data.errors import describe_validation_error

    base = config.explicit_settings() if isinstance(config, CampaignConfig) else dict(config)
    try:
        return CampaignConfig.model_validate(merge_overrides(base, overrides))
    except ValidationError as exc:
        raise CrystaloopError(f"campaign config with overrides {overrides or {}}: {describe_validation_error(exc)}") from None


def _retrying(task_fn, retry: RetrySettings, **options: Any):  # noqa: ANN001, ANN202
    delays = exponential_backoff(backoff_factor=retry.backoff_s)(retry.retries) if retry.retries else 0
    return task_fn.with_options(retries=retry.retries, retry_delay_seconds=delays, retry_jitter_factor=retry.jitter or None, **options)


def finished_reports(store_url: str | None, config: CampaignConfig) -> dict[int, IterationReport]:
    """Reports of the campaign's finished iterations, by index (the engine's reading of the store)."""
    from crystaloop.loop.campaign import finished_reports as engine_reports

    return engine_reports(store_for(store_url), config)


def ensure_oracle_limit(tag: str, limit: int) -> None:
    """Create or update the server's concurrency limit of task runs tagged ``tag``."""
    from prefect import get_client

    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag=tag, concurrency_limit=limit)


def _as_task(step: Step, config: CampaignConfig, store_url: str | None, run: IterationRun, settings: FlowSettings) -> IterationRun:
    """An engine step as one task named after it (``guard-0``), with the I/O retries: every step
    is idempotent over the store, so a retry continues where the failed attempt stopped."""
    task = _retrying(tasks.step, settings.io_retries, name=step.name, task_run_name=f"{step.name}-{run.index}")
    result: IterationRun = task(step.name, config, store_url, run)
    return result


def _cached_score(step: Step, config: CampaignConfig, store_url: str | None, run: IterationRun, settings: FlowSettings) -> IterationRun:
    """The score step, cached on the pending candidates' hashes when ``settings.cache_scores``."""
    pending = [c.id for c in iteration_candidates(store_for(store_url), config.name, run.index, ["generated"])]
    score = tasks.score
    if settings.cache_scores:
        from datetime import timedelta

        score = score.with_options(cache_key_fn=tasks.score_cache_key, cache_expiration=timedelta(days=settings.cache_days), persist_result=True)
    run.scores = score(config, store_url, run.index, pending)
    return run


def _parallel_evaluate(step: Step, config: CampaignConfig, store_url: str | None, run: IterationRun, settings: FlowSettings) -> IterationRun:
    """The evaluate step as oracle calls in parallel on the task runner (tagged, retried,
    concurrency-limited by tag), each result recorded by an ``update`` task as it arrives."""
    selected = iteration_candidates(store_for(store_url), config.name, run.index, ["selected"])
    if not selected:
        return run
    oracle = _retrying(tasks.measure, settings.oracle_retries, tags=[settings.oracle_tag, f"{settings.oracle_tag}:{config.oracle.kind}"])
    update = _retrying(tasks.update, settings.io_retries)
    progress = artifacts.Progress(len(selected), f"{config.name}: oracle calls") if settings.artifacts else None
    by_future = {oracle.submit(config, candidate): candidate for candidate in selected}
    failures = []
    for future in as_completed(list(by_future)):
        candidate = by_future[future]
        try:
            measurements = future.result()
        except Exception as exc:  # noqa: BLE001 - recorded, then raised once every call has ended
            failures.append(f"{candidate.id[:12]} ({candidate.crystal.reduced_formula}): {exc}")
            continue
        update(config, store_url, candidate, measurements)
        if progress is not None:
            progress.advance()
    if failures:
        raise OracleError(f"{len(failures)} of {len(selected)} oracle calls failed after retries; rerun the flow to resume: " + "; ".join(failures))
    return run


FlowStep = Callable[[Step, CampaignConfig, str | None, IterationRun, FlowSettings], IterationRun]
FLOW_STEPS: dict[str, FlowStep] = {"score": _cached_score, "evaluate": _parallel_evaluate}
"""Engine steps the flow runs its own way (by step name); every other step runs as :func:`_as_task`."""


def _campaign_name(config: Any) -> str:
    """The campaign's name from a ``config`` parameter: a CampaignConfig, or its JSON mapping as a
    deployment passes it ("campaign" when it has none, so naming never fails a run)."""
    name = config.get("name") if isinstance(config, dict) else getattr(config, "name", None)
    return str(name) if name else "campaign"


def campaign_run_name() -> str:
    """Flow-run name of :func:`campaign_flow`: the campaign's name (``perovskite-water-splitting``),
    so the Prefect UI lists runs by campaign, not by Prefect's random adjective–animal names."""
    from prefect.runtime import flow_run

    return _campaign_name(flow_run.parameters.get("config"))


def iteration_run_name() -> str:
    """Flow-run name of :func:`iteration_flow`: ``<campaign>-iteration-<index>``."""
    from prefect.runtime import flow_run

    parameters = flow_run.parameters
    return f"{_campaign_name(parameters.get('config'))}-iteration-{parameters.get('index')}"


@redacting
@flow(name="campaign-iteration", flow_run_name=iteration_run_name, log_prints=False)
def iteration_flow(config: CampaignConfig, store_url: str | None, index: int, settings: FlowSettings) -> IterationReport:
    """One iteration of ``config`` (resumed from the store when it was started before): the
    engine's :data:`~crystaloop.loop.campaign.ITERATION_STEPS` in order, as tasks."""
    from crystaloop.loop import campaign as engine

    run = engine.begin_iteration(store_for(store_url), config, index)
    for step in ITERATION_STEPS:
        run = FLOW_STEPS.get(step.name, _as_task)(step, config, store_url, run, settings)
    if run.report is None:
        raise RuntimeError(f"iteration {run.index} of {config.name}: no step saved a report")
    get_run_logger().info("iteration %d: %d generated, %d evaluated", run.index, run.report.generated, run.report.evaluated)
    if settings.artifacts:
        _publish(config, store_url, run.report, settings)
    return run.report


def _publish(config: CampaignConfig, store_url: str | None, report: IterationReport, settings: FlowSettings) -> None:
    store = store_for(store_url)
    candidates = iteration_candidates(store, config.name, report.iteration)
    artifacts.publish_iteration(report, config, candidates, settings.top_k)
    reports = [r for i, r in sorted(finished_reports(store_url, config).items())]
    everything = iteration_candidates(store, config.name, None, ["evaluated"])
    folder = Path(settings.report_dir) if settings.report_dir else Path("runs") / config.name
    for path in artifacts.publish_figures(reports, config, everything, folder):
        logger.info("figure: %s", path)


@redacting
@flow(name="crystaloop-campaign", flow_run_name=campaign_run_name, log_prints=False)
def campaign_flow(
    config: CampaignConfig,
    store_url: str | None = None,
    overrides: dict[str, Any] | None = None,
    settings: FlowSettings | None = None,
    iterations_per_run: int | None = None,
    store_url_secret: str | None = None,
) -> list[IterationReport]:
    """Run the campaign's remaining iterations, one subflow each; finished ones are read back.

    Args:
        config: the campaign (a deployment passes it as JSON).
        store_url: the store; default the config's ``store_url``, then ``$CRYSTALOOP_DB_URL``
            (a redacted URL, as a deployment passes it, is mapped back to the real one).
        overrides: per-run changes to ``config`` (``{"budget.iterations": 4}``).
        settings: how Prefect runs it (:class:`~crystaloop.flows.config.FlowSettings`).
        iterations_per_run: run at most this many new iterations (a nightly schedule with ``1``
            advances the campaign one iteration per night); ``None`` → all remaining.
        store_url_secret: name of a Prefect Secret block holding the store URL (it wins over
            ``store_url`` and the config's); subflows and tasks get only the reference
            ``prefect-secret:NAME``, so the URL is in no flow-run parameter.
    """
    config = resolve_config(config, overrides)
    settings = settings or FlowSettings()
    if store_url_secret:
        url = secret_reference(store_url_secret)
        reveal_store_url(url)  # fail here, naming the block, if it cannot be read
    else:
        url = reveal_store_url(resolve_store_url(store_url or config.store_url))
    if settings.oracle_concurrency is not None:
        ensure_oracle_limit(settings.oracle_tag, settings.oracle_concurrency)
    done = finished_reports(url, config)
    runner = make_task_runner(settings.runner)
    reports, new = [], 0
    for index in range(config.budget.iterations):
        if index in done:
            reports.append(done[index])
            continue
        if iterations_per_run is not None and new >= iterations_per_run:
            break
        subflow = redacting(iteration_flow.with_options(task_runner=runner))
        reports.append(subflow(config, url, index, settings))
        new += 1
    get_run_logger().info("campaign %s: %d iterations finished, %d in this run", config.name, len(reports), new)
    return reports
