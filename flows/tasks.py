"""Prefect tasks over the campaign engine's steps (:mod:`crystaloop.loop.campaign`).

Each task is a thin call into the library with plain inputs (the config, a store URL, the
iteration's :class:`~crystaloop.loop.campaign.IterationRun`, candidates), so it runs the same in
the flow's process, a thread pool or a Dask worker. The engine persists every step before the
next one reads it; the tasks add Prefect's retries, caching, tags and observability and keep no
state of their own.

* :func:`step` — any entry of the engine's step table, by name (the flow names each task run
  after its step: ``generate-0``, ``guard-0``, ``select-0``, ``report-0``).
* :func:`score` — surrogate predictions of the pending candidates, cached on their structure
  hashes and the surrogate/guard settings (:func:`score_cache_key`).
* :func:`measure` — one oracle call (tagged, retried with back-off, concurrency-limited by tag).
* :func:`update` — record one candidate's measurements and its final status (I/O retries).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from typing import Any

from prefect import task

from crystaloop.data.records import Candidate, Measurement
from crystaloop.flows.runtime import components_for, store_for
from crystaloop.loop import campaign as engine
from crystaloop.loop.config import CampaignConfig

__all__ = ["step", "score", "measure", "update", "score_cache_key"]

logger = logging.getLogger(__name__)


@task(name="step")
def step(name: str, config: CampaignConfig, store_url: str | None, run: engine.IterationRun) -> engine.IterationRun:
    """Run the engine step called ``name`` on the iteration ``run`` describes; returns ``run`` as
    the step left it."""
    engine.step_named(name).run(components_for(config), store_for(store_url), config, run)
    return run


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


@task(name="oracle", task_run_name="oracle-{candidate.id:.12}")
def measure(config: CampaignConfig, candidate: Candidate) -> list[Measurement]:
    """One oracle call: the candidate's measurements (a failed calculation is a failed
    Measurement; only infrastructure faults raise, and those are retried)."""
    return engine.measure_candidate(components_for(config), candidate)


@task(name="update", task_run_name="update-{candidate.id:.12}")
def update(config: CampaignConfig, store_url: str | None, candidate: Candidate, measurements: list[Measurement]) -> str:
    """Record the measurements and the candidate's final status; returns that status."""
    return engine.record_measurements(store_for(store_url), config, candidate, measurements).value
