"""Bayesian optimisation over the generation condition (``strategy.condition_search: bo``).

The search space (:class:`ConditionBox`) is a box over the condition's continuous knobs: each
objective's property target (its window, or ``condition_bounds``) and the classifier-free
guidance scale (``guidance_scales``' range, or ``condition_bounds``), scaled to [0, 1]^d.
Chemical systems still cycle as in :func:`~crystaloop.loop.strategies.base.default_conditions`.

Every condition an earlier iteration generated under is one observation
(:func:`condition_outcomes`): x = its knobs, y = the **guarded score** of what it produced, the
summed :func:`~crystaloop.loop.strategies.reward.desirability` of its candidates that passed the
guards over the number it generated (fraction passing × mean desirability, in [0, 1]; measured
values replace predictions where the oracle has run). A botorch ``SingleTaskGP`` on these
observations chooses the next iteration's ``n_conditions`` conditions: the first where the GP's
posterior mean is highest (generate where it works best), the others jointly by
qLogNoisyExpectedImprovement with that one pending (``optimize_acqf``, seeded). The first
``condition_initial`` iterations, and any iteration with fewer than two distinct outcomes, draw
scrambled Sobol points instead. A knob the generator dropped (a target it cannot condition on)
reads as the box centre.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from crystaloop.data.records import Candidate, CandidateStatus, Condition
from crystaloop.data.seeding import restores_torch_rng
from crystaloop.loop.config import CampaignConfig
from crystaloop.loop.report import ConditionOutcome
from crystaloop.loop.strategies.base import allowed_systems, target_defaults
from crystaloop.loop.strategies.reward import desirability

__all__ = ["ConditionBox", "ConditionOutcome", "condition_outcomes", "bo_conditions"]

logger = logging.getLogger(__name__)

GUIDANCE = "guidance_scale"
_NOT_PASSED = (CandidateStatus.GENERATED, CandidateStatus.REJECTED)


@dataclass(frozen=True)
class ConditionBox:
    """The searched knobs (``names``) with their bounds, and the fixed rest.

    Attributes:
        names: searched knobs, property names then ``guidance_scale`` (d of them).
        low, high: (d,) bounds in the knobs' units.
        fixed_targets: property targets that are not searched (their defaults).
        fixed_guidance: the guidance scale when it is not searched.
    """

    names: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray
    fixed_targets: dict[str, float]
    fixed_guidance: float

    @classmethod
    def from_config(cls, config: CampaignConfig) -> ConditionBox:
        bounds = config.strategy.condition_bounds
        defaults = target_defaults(config)
        names, low, high, fixed = [], [], [], {}
        for objective in config.objectives:
            prop = objective.property
            box = bounds.get(prop, objective.window)
            if box is not None:
                names.append(prop)
                low.append(box[0])
                high.append(box[1])
            elif prop in defaults:
                fixed[prop] = defaults[prop]
        scales = config.strategy.guidance_scales
        guidance = bounds.get(GUIDANCE, (min(scales), max(scales)) if max(scales) > min(scales) else None)
        if guidance is not None:
            names.append(GUIDANCE)
            low.append(guidance[0])
            high.append(guidance[1])
        return cls(tuple(names), np.array(low, dtype=np.float64), np.array(high, dtype=np.float64), fixed, float(scales[0]))

    def __len__(self) -> int:
        return len(self.names)

    def to_unit(self, condition: Condition) -> np.ndarray:
        """(d,) the condition's knobs scaled to [0, 1] (a knob it lacks: 0.5)."""
        x = np.full(len(self), 0.5)
        for j, name in enumerate(self.names):
            value = condition.guidance_scale if name == GUIDANCE else condition.properties.get(name)
            if value is not None:
                x[j] = (value - self.low[j]) / (self.high[j] - self.low[j])
        return x

    def condition(self, x: np.ndarray, system: tuple[str, ...] | None) -> Condition:
        """The condition at unit-box point ``x`` (d,) (clipped to the box) for ``system``."""
        values = self.low + np.clip(x, 0.0, 1.0) * (self.high - self.low)
        knobs = dict(zip(self.names, values.tolist(), strict=True))
        guidance = knobs.pop(GUIDANCE, self.fixed_guidance)
        return Condition(chemical_system=system, properties={**self.fixed_targets, **knobs}, guidance_scale=guidance)


def _values(candidates: Sequence[Candidate], config: CampaignConfig) -> np.ndarray:
    """(n, m, 2) mean/std per objective: measured (std 0) where ``ok``, else predicted; NaN if neither."""
    out = np.full((len(candidates), len(config.objectives), 2), np.nan)
    for i, candidate in enumerate(candidates):
        measured = {m.property: m.value for m in candidate.measurements if m.status == "ok" and m.value is not None}
        for j, objective in enumerate(config.objectives):
            if objective.property in measured:
                out[i, j] = (measured[objective.property], 0.0)
            elif objective.property in candidate.predictions:
                out[i, j] = candidate.predictions[objective.property][:2]
    return out


def condition_outcomes(candidates: Sequence[Candidate], config: CampaignConfig) -> list[ConditionOutcome]:
    """One outcome per distinct condition (and iteration) among ``candidates``, in first-seen
    order; candidates without a condition are left out."""
    groups: dict[tuple[int | None, str], list[Candidate]] = {}
    for candidate in candidates:
        if candidate.condition is not None:
            key = (candidate.provenance.iteration, json.dumps(candidate.condition.model_dump(mode="json"), sort_keys=True))
            groups.setdefault(key, []).append(candidate)
    out = []
    for members in groups.values():
        passed = [c for c in members if c.status not in _NOT_PASSED]
        total = float(desirability(_values(passed, config), config.objectives).sum()) if passed else 0.0
        out.append(ConditionOutcome(condition=members[0].condition, generated=len(members), passed=len(passed), score=total / len(members)))
    return out


def _systems(config: CampaignConfig, iteration: int, n: int) -> list[tuple[str, ...] | None]:
    return list(itertools.islice(itertools.cycle(allowed_systems(config)), iteration * n, (iteration + 1) * n))


def _sobol(n: int, d: int, seed: int) -> np.ndarray:
    from scipy.stats import qmc

    return qmc.Sobol(d, scramble=True, seed=seed).random(n)


@restores_torch_rng
def _gp_batch(x: np.ndarray, y: np.ndarray, n: int, seed: int, mc_samples: int) -> np.ndarray:
    """(n, d) next points in the unit box from a GP over (x (N, d), y (N,)): the posterior-mean
    maximiser first (over the observed points and 1024 Sobol points), then ``n - 1`` points by
    qLogNoisyEI with that one pending."""
    import torch
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Standardize
    from botorch.optim import optimize_acqf
    from botorch.sampling import SobolQMCNormalSampler
    from gpytorch.mlls import ExactMarginalLogLikelihood

    torch.manual_seed(seed)
    train_x = torch.from_numpy(np.asarray(x, dtype=np.float64))
    train_y = torch.from_numpy(np.asarray(y, dtype=np.float64))[:, None]
    model = SingleTaskGP(train_x, train_y, outcome_transform=Standardize(m=1))
    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    d = train_x.shape[1]
    grid = torch.cat([train_x, torch.from_numpy(_sobol(1024, d, seed))])
    with torch.no_grad():
        best = grid[model.posterior(grid).mean[:, 0].argmax()][None, :]
    if n == 1:
        return best.numpy()
    sampler = SobolQMCNormalSampler(sample_shape=torch.Size([mc_samples]), seed=seed)
    acq = qLogNoisyExpectedImprovement(model, X_baseline=train_x, sampler=sampler, prune_baseline=False, X_pending=best)
    bounds = torch.stack([torch.zeros(d, dtype=torch.float64), torch.ones(d, dtype=torch.float64)])
    chosen, _ = optimize_acqf(acq, bounds=bounds, q=n - 1, num_restarts=4, raw_samples=64, options={"seed": seed, "maxiter": 60, "batch_limit": 4})
    return np.concatenate([best.numpy(), chosen.detach().numpy()])


def bo_conditions(config: CampaignConfig, iteration: int, seed: int, n: int, history: Sequence[Candidate]) -> list[Condition]:
    """The ``n`` conditions of ``iteration`` (see the module docstring); ``history``: candidates
    of earlier iterations with their conditions, statuses, predictions and measurements."""
    box = ConditionBox.from_config(config)
    systems = _systems(config, iteration, n)
    if not len(box):
        logger.info("condition search: nothing to search (no target window, bounds or guidance range); default conditions")
        return [box.condition(np.zeros(0), s) for s in systems]
    outcomes = condition_outcomes([c for c in history if c.provenance.iteration is not None and c.provenance.iteration < iteration], config)
    x = np.array([box.to_unit(o.condition) for o in outcomes]).reshape(-1, len(box))
    y = np.array([o.score for o in outcomes])
    if iteration < config.strategy.condition_initial or len(np.unique(y)) < 2:
        points, how = _sobol(n, len(box), seed % (2**32)), "Sobol"
    else:
        points, how = _gp_batch(x, y, n, seed % (2**31), config.strategy.mc_samples), f"GP on {len(y)} outcomes (best {y.max():.3g})"
    conditions = [box.condition(p, s) for p, s in zip(points, systems, strict=True)]
    logger.info("condition search, iteration %d (%s): %s", iteration, how,
                "; ".join(", ".join(f"{k}={v:.3g}" for k, v in {**c.properties, GUIDANCE: c.guidance_scale}.items()) for c in conditions))
    return conditions
