"""Prefect tasks over the campaign engine's steps (:mod:`crystaloop.loop.campaign`).

Each task is a thin call into the library with plain inputs (the config, a store URL, an
iteration index, candidates), so it runs the same in the flow's process, a thread pool or a Dask
worker. The engine persists every step before the next one reads it; the tasks add Prefect's
retries, caching, tags and observability and keep no state of their own.

* :func:`generate` — sample and store the iteration's candidates (idempotent; I/O retries).
* :func:`score` — surrogate predictions of the pending candidates, cached on their structure
  hashes and the surrogate/guard settings (:func:`score_cache_key`).
* :func:`guard` — every guard's verdict recorded, ``scored`` or ``rejected``.
* :func:`select` — top the picks up to the oracle budget.
* :func:`measure` — one oracle call (tagged, retried with back-off, concurrency-limited by tag).
* :func:`update` — record one candidate's measurements and its final status (I/O retries).
* :func:`report` — the iteration's report, saved and the iteration closed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from typing import Any

from prefect import task

from crystaloop.data.records import Candidate, CandidateStatus, Measurement
from crystaloop.flows.runtime import components_for, store_for
from crystaloop.loop import campaign as engine
from crystaloop.loop.config import CampaignConfig
from crystaloop.loop.report import IterationReport

__all__ = ["generate", "score", "guard", "select", "measure", "update", "report", "score_cache_key"]

logger = logging.getLogger(__name__)


@task(name="generate", task_run_name="generate-{index}")
def generate(config: CampaignConfig, store_url: str | None, index: int) -> int | None:
    """Generate and store the iteration's candidates; crystals already stored, or ``None`` when
    the iteration already had candidates (resumed)."""
    return engine.generate_candidates(components_for(config), store_for(store_url), config, index)


def score_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    """Cache key of :func:`score`: the pending candidates' ids (canonical structure hashes), every
    setting the scores depend on (surrogates, constraints, validity guard), and the campaign and
    iteration: the scoring surrogate is refitted on each iteration's new labels, so a score is
    reusable only by the same iteration of the same campaign (a retried or resumed run)."""
    config: CampaignConfig = parameters["config"]
    payload = {
        "campaign": config.name,
        "config": config.config_hash(),
        "iteration": parameters["index"],
        "surrogates": [s.model_dump(mode="json") for s in config.surrogates],
        "constraints": config.constraints.model_dump(mode="json"),
        "validity": config.guards.validity.model_dump(mode="json"),
        "ids": sorted(parameters["pending_ids"]),
    }
    return "crystaloop-score-" + hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


@task(name="score", task_run_name="score-{index}")
def score(config: CampaignConfig, store_url: str | None, index: int, pending_ids: Sequence[str]) -> engine.Scores:
    """Surrogate predictions of the iteration's pending candidates (``pending_ids``, the cache key)."""
    scores = engine.score_candidates(components_for(config), store_for(store_url), config, index)
    unexpected = set(scores.predictions) - set(pending_ids)
    if unexpected:  # the store changed under the flow; a stale key must not be cached
        raise RuntimeError(f"scored candidates {sorted(unexpected)[:3]} were not pending when the flow read the store")
    return scores


@task(name="guard", task_run_name="guard-{index}")
def guard(config: CampaignConfig, store_url: str | None, index: int, scores: engine.Scores) -> dict[str, int]:
    """Run the guards and record verdicts; returns the iteration's candidates per status."""
    store = store_for(store_url)
    engine.guard_candidates(components_for(config), store, config, index, scores)
    counts: dict[str, int] = {}
    for c in engine.iteration_candidates(store, config.name, index):
        counts[c.status.value] = counts.get(c.status.value, 0) + 1
    return counts


@task(name="select", task_run_name="select-{index}")
def select(config: CampaignConfig, store_url: str | None, index: int) -> list[Candidate]:
    """Top up the picks to the oracle budget; returns every candidate still ``selected`` (picked
    now or by an interrupted run, not yet measured)."""
    store = store_for(store_url)
    engine.select_candidates(components_for(config), store, config, index)
    return engine.iteration_candidates(store, config.name, index, [CandidateStatus.SELECTED])


@task(name="oracle", task_run_name="oracle-{candidate.id:.12}")
def measure(config: CampaignConfig, candidate: Candidate) -> list[Measurement]:
    """One oracle call: the candidate's measurements (a failed calculation is a failed
    Measurement; only infrastructure faults raise, and those are retried)."""
    return engine.measure_candidate(components_for(config), candidate)


@task(name="update", task_run_name="update-{candidate.id:.12}")
def update(config: CampaignConfig, store_url: str | None, candidate: Candidate, measurements: list[Measurement]) -> str:
    """Record the measurements and the candidate's final status; returns that status."""
    return engine.record_measurements(store_for(store_url), config, candidate, measurements).value


@task(name="report", task_run_name="report-{index}")
def report(config: CampaignConfig, store_url: str | None, index: int, duplicates: int | None, resumed: bool, started: float) -> IterationReport:
    """Build and save the iteration's report and mark the iteration finished."""
    store = store_for(store_url)
    result = engine.build_report(components_for(config), store, config, index, duplicates, resumed, started)
    engine.end_iteration(store, config, result)
    return result
