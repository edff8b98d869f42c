"""Bayesian optimisation over the generated pool with botorch batch acquisition.

The model is the residual GP of :mod:`.posterior` (surrogate mean as prior, GP head on the
oracle-measured residuals over surrogate embeddings). An MC objective maps GP samples back to
objective values (adding the prior mean of each row, looked up by its features) and then to
utilities (:mod:`crystaloop.loop.objectives`):

* one objective: qLogNoisyExpectedImprovement
  with the labelled points as the noisy baseline;
* several objectives: qLogNoisyExpectedHypervolumeImprovement, reference point just below the
  worst labelled utilities.

``optimize_acqf_discrete`` chooses ``k`` distinct pool members greedily (each pick becomes a
pending point for the next); picks selected earlier but not yet measured enter as ``X_pending``.
Before enough labels exist (``min_labels``) the strategy falls back to active learning's UCB
on the prior, with ``beta``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from pydantic import Field

from crystaloop.data.records import Condition
from crystaloop.data.seeding import restores_torch_rng
from crystaloop.loop.objectives import utilities, utilities_torch, utility_scales
from crystaloop.loop.strategies.al import ALConfig, ALStrategy
from crystaloop.loop.strategies.base import Pool, StrategySettings, StrategyState, propose_conditions
from crystaloop.loop.strategies.posterior import ResidualGP, pending_elements, pool_elements

if TYPE_CHECKING:
    from crystaloop.loop.config import CampaignConfig, Objective

__all__ = ["BOConfig", "BOStrategy"]

logger = logging.getLogger(__name__)


class _PriorLookup:
    """Prior means (N, m) of known feature rows (N, k); rows are found by nearest features."""

    def __init__(self, features: torch.Tensor, prior: np.ndarray) -> None:
        self.features = features
        self.prior = torch.from_numpy(np.nan_to_num(np.asarray(prior, dtype=np.float64)))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        index = torch.cdist(flat, self.features).argmin(dim=-1)
        return self.prior[index].reshape(*x.shape[:-1], self.prior.shape[-1])


class BOConfig(StrategySettings):
    """``strategy: {kind: bo, ...}``.

    Attributes:
        beta: UCB exploration weight of the fallback used while fewer than ``min_labels``
            labels exist (see the module docstring).
    """

    kind: Literal["bo"] = "bo"
    beta: float = Field(1.0, ge=0)

    def build(self, campaign: CampaignConfig) -> BOStrategy:
        return BOStrategy(campaign.objectives, self, seed=campaign.seed)


class BOStrategy:
    """See the module docstring."""

    name = "bo"

    def __init__(self, objectives: Sequence[Objective], config: BOConfig | None = None, seed: int = 0) -> None:
        self.objectives = tuple(objectives)
        self.config = config or BOConfig()
        self.seed = seed

    def propose(self, state: StrategyState) -> list[Condition]:
        return propose_conditions(state)

    @restores_torch_rng
    def select(self, pool: Pool, predictions: np.ndarray, k: int) -> np.ndarray:
        n = len(pool)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        k = min(k, n)
        gp = ResidualGP.for_strategy(self.config, self.seed).fit(pool.labels)
        if not gp.fitted:
            fallback = ALStrategy(self.objectives, ALConfig.ranking(self.config, acquisition="ucb", beta=self.config.beta), self.seed)
            return fallback.select(pool, predictions, k)
        return self._acquire(gp, pool, predictions, k)

    def _acquire(self, gp: ResidualGP, pool: Pool, predictions: np.ndarray, k: int) -> np.ndarray:
        from botorch.acquisition.logei import qLogNoisyExpectedImprovement
        from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
        from botorch.acquisition.multi_objective.objective import GenericMCMultiOutputObjective
        from botorch.acquisition.objective import GenericMCObjective
        from botorch.optim import optimize_acqf_discrete

        _skip_fused_kernel_build()
        from botorch.sampling import SobolQMCNormalSampler

        head = gp.head
        labels = pool.labels
        x_pool = head.features(pool.embeddings, pool_elements(gp, pool))
        x_base = head.features(labels.embeddings[gp.rows], gp.offsets(None if labels.elements is None else labels.elements[gp.rows]))
        tables = [x_pool, x_base]
        priors = [predictions[..., 0], labels.prior[gp.rows]]
        has_pending = pool.pending.size > 0
        if has_pending:
            x_pending = head.features(pool.pending, pending_elements(gp, pool))
            tables.append(x_pending)
            priors.append(pool.pending_prior)
        lookup = _PriorLookup(torch.cat(tables), np.concatenate(priors))
        m = len(self.objectives)
        place = torch.zeros(len(gp.modelled), m, dtype=torch.float64)
        place[torch.arange(len(gp.modelled)), torch.from_numpy(gp.modelled)] = 1.0
        mean, _ = gp.posterior(pool.embeddings, predictions[..., 0], predictions[..., 1], pool_elements(gp, pool))
        scales = torch.from_numpy(utility_scales(mean, self.objectives))
        weights = torch.tensor([o.weight for o in self.objectives], dtype=torch.float64)
        objectives = self.objectives

        def scaled_utilities(samples: torch.Tensor, X: torch.Tensor) -> torch.Tensor:  # noqa: N803 - botorch's keyword
            values = lookup(X) + samples @ place  # (..., q, m)
            return utilities_torch(values, objectives) / scales

        torch.manual_seed(self.seed)
        sampler = SobolQMCNormalSampler(sample_shape=torch.Size([self.config.mc_samples]), seed=self.seed)
        common = {"X_baseline": x_base, "sampler": sampler, "prune_baseline": False}
        if m == 1:

            def scalar(samples: torch.Tensor, X: torch.Tensor) -> torch.Tensor:  # noqa: N803
                return (scaled_utilities(samples, X) * weights).sum(-1)

            acq = qLogNoisyExpectedImprovement(head.model, objective=GenericMCObjective(scalar), **common)
        else:
            observed = utilities(np.where(np.isfinite(labels.values), labels.values, labels.prior)[gp.rows], objectives)
            observed = np.nan_to_num(observed / scales.numpy())
            spread = np.maximum(observed.max(axis=0) - observed.min(axis=0), 1e-6)
            ref_point = (observed.min(axis=0) - 0.1 * spread).tolist()
            acq = qLogNoisyExpectedHypervolumeImprovement(
                head.model, ref_point=ref_point, objective=GenericMCMultiOutputObjective(scaled_utilities), **common
            )
        if has_pending:
            acq.set_X_pending(x_pending)
        with torch.no_grad():
            chosen, _ = optimize_acqf_discrete(acq, q=k, choices=x_pool, unique=True, max_batch_size=256)
        picks = torch.cdist(chosen, x_pool).argmin(dim=-1).numpy()
        return np.sort(np.unique(picks))


FUSED_KERNEL_ENV = "CRYSTALOOP_BOTORCH_FUSED_KERNEL"


def _skip_fused_kernel_build() -> None:
    """Keep botorch's multi-objective qLogNEHVI on its pure-Python path unless ``$CRYSTALOOP_BOTORCH_FUSED_KERNEL=1``.

    On first use botorch JIT-compiles a fused C++ kernel into ``~/.cache/torch_extensions``: it
    needs a compiler, took about 14 minutes on the 2-core VM under load, and a process killed while
    compiling leaves a lock file behind on which every later qLogNEHVI call waits forever (seen on
    2026-12-03: a BO unit test hung until its timeout). The pure-Python path computes the same
    acquisition values. botorch offers no switch for this, so the module's "load attempted" flag is
    set; a botorch without that flag is left alone.
    """
    import os

    if os.environ.get(FUSED_KERNEL_ENV) == "1":
        return
    from botorch.acquisition.multi_objective import logei

    if hasattr(logei, "_load_attempted") and logei._C is None:
        logei._load_attempted = True
