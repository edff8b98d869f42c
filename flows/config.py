"""`FlowSettings`: how a campaign runs under Prefect (task runner, retries, caching, artifacts).

The campaign itself (:class:`~crystaloop.loop.config.CampaignConfig`) says *what* to run; these
settings say *how* Prefect runs it, so they stay out of the campaign's hash. Defaults: a thread
pool task runner, three oracle retries with exponential back-off, surrogate scores cached by
candidate id (a canonical structure hash), artifacts on.

Example::

    settings = FlowSettings(runner=RunnerSettings(kind="dask", n_workers=2))
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from crystaloop.data.errors import CrystaloopError

__all__ = ["RunnerSettings", "RetrySettings", "FlowSettings", "merge_overrides", "artifact_key"]

_STRICT = ConfigDict(extra="forbid", frozen=True)


class RunnerSettings(BaseModel):
    """Task runner of the per-iteration subflows.

    Attributes:
        kind: ``threads`` (Prefect's ThreadPoolTaskRunner) or ``dask`` (prefect-dask on a local
            ``distributed`` cluster, or on ``address`` when given).
        max_workers: thread pool size for ``threads``.
        n_workers, threads_per_worker, processes: the local Dask cluster's shape.
        address: scheduler address of an existing Dask cluster (``tcp://127.0.0.1:8786``).
    """

    model_config = _STRICT

    kind: Literal["threads", "dask"] = "threads"
    max_workers: int = Field(2, ge=1)
    n_workers: int = Field(2, ge=1)
    threads_per_worker: int = Field(1, ge=1)
    processes: bool = True
    address: str | None = None


class RetrySettings(BaseModel):
    """Retries with exponential back-off: ``retries`` attempts after the first, delays
    ``backoff_s · 2^k`` seconds, randomised by ``jitter`` (fraction)."""

    model_config = _STRICT

    retries: int = Field(3, ge=0)
    backoff_s: float = Field(2.0, ge=0)
    jitter: float = Field(0.2, ge=0, le=1)


class FlowSettings(BaseModel):
    """How :func:`crystaloop.flows.campaign.campaign_flow` runs a campaign.

    Attributes:
        runner: task runner of the iteration subflows.
        oracle_retries: retries of oracle calls (infrastructure faults raise; a failed
            calculation is a failed Measurement and is not retried).
        io_retries: retries of tasks that write to the store.
        oracle_tag: tag of oracle task runs, the key of their concurrency limit.
        oracle_concurrency: most oracle calls running at once across all flow runs (a tag
            concurrency limit on the Prefect server); ``None`` leaves the limit alone.
        cache_scores: cache surrogate scores keyed on the candidates' structure hashes and the
            surrogate, guard and constraint settings (safe: same inputs, same predictions).
        cache_days: how long a cached score stays valid.
        artifacts: create the per-iteration artifacts (markdown, table, progress, PNG).
        top_k: rows of the top-candidates table artifact.
        report_dir: folder for the discovery-curve PNGs (``None`` → ``runs/<campaign>``).
    """

    model_config = _STRICT

    runner: RunnerSettings = RunnerSettings()
    oracle_retries: RetrySettings = RetrySettings()
    io_retries: RetrySettings = RetrySettings(retries=2, backoff_s=1.0)
    oracle_tag: str = Field("oracle", min_length=1)
    oracle_concurrency: int | None = Field(None, ge=1)
    cache_scores: bool = True
    cache_days: float = Field(7.0, gt=0)
    artifacts: bool = True
    top_k: int = Field(10, ge=1)
    report_dir: str | None = None

    @field_validator("oracle_tag")
    @classmethod
    def _tag(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.:\-]+", value):
            raise ValueError(f"oracle_tag {value!r} may only hold letters, digits and _ . : -")
        return value


def merge_overrides(base: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in, nested mappings merged key by key.

    Keys may also be dotted paths (``{"budget.iterations": 1}``), which is how the command line
    passes them.

    Raises:
        CrystaloopError: a dotted path runs through a value that is not a mapping.
    """
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for key, value in (overrides or {}).items():
        parts = key.split(".")
        target = out
        for depth, part in enumerate(parts[:-1]):
            current = target.get(part)
            if current is None:
                current = target[part] = {}
            elif not isinstance(current, dict):
                where = ".".join(parts[: depth + 1])
                raise CrystaloopError(f"override {key!r}: {where} is {current!r}, not a mapping of settings")
            else:
                current = target[part] = dict(current)
            target = current
        leaf = parts[-1]
        if isinstance(value, dict) and isinstance(target.get(leaf), dict):
            target[leaf] = merge_overrides(target[leaf], value)
        else:
            target[leaf] = value
    return out


def artifact_key(*parts: object) -> str:
    """A Prefect artifact key (lowercase letters, digits, dashes) from ``parts``; the same
    parts give the same key, so artifacts version across runs."""
    raw = "-".join(str(p) for p in parts).lower()
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]", "-", raw)).strip("-")
