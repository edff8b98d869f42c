"""The strategy port: ``propose(state) -> list[Condition]`` and ``select(pool, predictions, k) -> indices``.

A :class:`Pool` is what selection sees: the scored candidates, their embeddings and the
campaign's labelled history (embeddings, measured objective values and the surrogate's
predictions of them). Values are in the objectives' units; ``NaN`` marks an objective that was
not measured (or that the surrogate does not predict). Every strategy is deterministic for a
given seed.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from crystaloop.data.records import Candidate, Condition
from crystaloop.loop.allocation import AllocationConfig
from crystaloop.loop.collapse import Adjustment, widen_conditions

if TYPE_CHECKING:
    from crystaloop.loop.config import CampaignConfig

__all__ = ["StrategySettings", "Labels", "Pool", "StrategyState", "Strategy", "default_conditions", "propose_conditions", "target_defaults", "allowed_systems", "prior_from_predictions"]


class StrategySettings(BaseModel):
    """Settings every strategy has; each strategy's config (``kind`` and its own fields) extends it.

    Attributes:
        min_labels: measured labels needed before a GP is fitted (bo and al selection, and the
            campaign's online surrogate for every kind).
        gp_components: PCA dimensions of the GP head's inputs.
        gp_element_offsets: the residual GP adds one offset per element (a linear kernel on
            element presence beside the one on the embedding), so what the oracle measured on a
            few crystals holding an element corrects the prior on every crystal holding it (a
            shipped model wrong about one corner of chemistry is corrected there as a whole).
        mc_samples: quasi-Monte-Carlo samples of the botorch acquisition functions (bo
            selection, ``condition_search: bo``).
        guidance_scales: conditions proposed cycle through these classifier-free guidance weights.
        condition_search: how the conditions are chosen: ``cycle`` (systems × guidance scales with
            the objectives' targets) or ``bo`` (a GP over the condition's targets and guidance
            scale fitted to the guarded score of what each earlier condition produced;
            :mod:`crystaloop.loop.strategies.condition_bo`); an rl policy chooses its own.
        condition_bounds: ``bo`` search box: objective property or ``guidance_scale`` →
            ``[low, high]`` (property units). Unlisted: a target window is its own bounds, the
            guidance scale spans ``guidance_scales``, anything else stays at its default.
        condition_initial: iterations of space-filling (Sobol) conditions before the GP chooses.
        allocation: how a composite generator's batch is split between its arms: ``fixed`` (the
            configured shares) or ``bandit`` (Thompson sampling on verified hits per oracle call,
            with a floor share; an rl policy chooses the shares as part of its actions);
            :mod:`crystaloop.loop.allocation`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_labels: int = Field(4, ge=2)
    gp_components: int = Field(8, gt=0)
    gp_element_offsets: bool = True
    mc_samples: int = Field(128, gt=0)
    guidance_scales: tuple[float, ...] = (1.0,)
    condition_search: Literal["cycle", "bo"] = "cycle"
    condition_bounds: dict[str, tuple[float, float]] = Field(default_factory=dict)
    condition_initial: int = Field(1, ge=1)
    allocation: AllocationConfig = AllocationConfig()

    @model_validator(mode="after")
    def _condition_bounds(self) -> StrategySettings:
        for name, (low, high) in self.condition_bounds.items():
            if not low < high:
                raise ValueError(f"condition_bounds[{name!r}] must have low < high, got {[low, high]}")
        if "guidance_scale" in self.condition_bounds and self.condition_bounds["guidance_scale"][0] < 0:
            raise ValueError(f"guidance_scale bounds must be ≥ 0, got {list(self.condition_bounds['guidance_scale'])}")
        return self


@dataclass
class Labels:
    """Labelled history: embeddings (L, D), measured values (L, m), surrogate means at those
    structures (L, m); ``NaN`` where missing. ``elements``: (L, 119) element presence of the
    labelled structures (:func:`~crystaloop.data.elements.element_presence`), the inputs of the
    residual GP's per-element term; ``None`` leaves that term out."""

    embeddings: np.ndarray
    values: np.ndarray
    prior: np.ndarray
    elements: np.ndarray | None = None

    @classmethod
    def empty(cls, n_objectives: int, dim: int = 0) -> Labels:
        return cls(np.zeros((0, dim)), np.zeros((0, n_objectives)), np.zeros((0, n_objectives)))

    def __len__(self) -> int:
        return len(self.values)


@dataclass
class Pool:
    """What ``select`` chooses from.

    Attributes:
        candidates: the n scored candidates.
        embeddings: (n, D) features of the candidates (surrogate embeddings).
        labels: the campaign's labelled history.
        pending: (P, D) embeddings of picks selected but not yet measured.
        pending_prior: (P, m) the surrogate's means at the pending picks (NaN where none).
        exploration: multiplier of UCB's beta set by the collapse monitor (1: as configured).
        elements: (n, 119) element presence of the candidates (with ``labels.elements``, the
            residual GP's per-element term); ``None``: computed from the candidates when needed.
        pending_elements: (P, 119) the same for the pending picks.
    """

    candidates: Sequence[Candidate]
    embeddings: np.ndarray
    labels: Labels
    pending: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    pending_prior: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    exploration: float = 1.0
    elements: np.ndarray | None = None
    pending_elements: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.candidates)

    def candidate_elements(self) -> np.ndarray:
        """(n, 119) element presence of the candidates (``elements``, else from their crystals)."""
        if self.elements is None:
            from crystaloop.data.elements import element_presence

            self.elements = element_presence([c.crystal for c in self.candidates])
        return self.elements


@dataclass(frozen=True)
class StrategyState:
    """What ``propose`` sees: the config, the iteration and its seed, how many conditions to
    propose, the collapse monitor's adjustment for this iteration and the campaign's candidates
    of earlier iterations (conditions, statuses, predictions, measurements)."""

    config: CampaignConfig
    iteration: int
    seed: int
    n_conditions: int = 1
    adjustment: Adjustment = field(default_factory=Adjustment)
    history: Sequence[Candidate] = ()


@runtime_checkable
class Strategy(Protocol):
    """Proposes generation conditions and picks which candidates the oracle measures."""

    name: str

    def propose(self, state: StrategyState) -> list[Condition]: ...

    def select(self, pool: Pool, predictions: np.ndarray, k: int) -> np.ndarray:
        """Indices (≤ k distinct, into ``pool.candidates``) to measure.

        Args:
            pool: candidates, embeddings, labels and pending picks.
            predictions: (n, m, 2) surrogate mean and std per objective (NaN where none).
            k: oracle calls to spend.
        """
        ...


def target_defaults(config: CampaignConfig) -> dict[str, float]:
    """Property → the target a condition asks for by default: window midpoint, else threshold."""
    targets = {}
    for objective in config.objectives:
        if objective.window is not None:
            targets[objective.property] = 0.5 * (objective.window[0] + objective.window[1])
        elif objective.threshold is not None:
            targets[objective.property] = objective.threshold
    return targets


def allowed_systems(config: CampaignConfig) -> list[tuple[str, ...] | None]:
    """The chemical systems conditions cycle through: the constraints' systems, else their
    element list as one system, else ``[None]`` (unconstrained)."""
    constraints = config.constraints
    if constraints.chemical_systems is not None:
        return list(constraints.chemical_systems)
    return [constraints.elements] if constraints.elements is not None else [None]


def default_conditions(state: StrategyState) -> list[Condition]:
    """Conditions cycling through the allowed chemical systems and guidance scales, with the
    objectives' target values (window midpoints, thresholds) as property targets, widened by
    the state's collapse adjustment (:func:`~crystaloop.loop.collapse.widen_conditions`)."""
    config = state.config
    combos = itertools.islice(
        itertools.cycle(itertools.product(allowed_systems(config), config.strategy.guidance_scales)),
        state.iteration * state.n_conditions,
        (state.iteration + 1) * state.n_conditions,
    )
    targets = target_defaults(config)
    conditions = [Condition(chemical_system=s, properties=targets, guidance_scale=g) for s, g in combos]
    return widen_conditions(conditions, state.adjustment)


def propose_conditions(state: StrategyState) -> list[Condition]:
    """The conditions random, bo and al propose: ``strategy.condition_search`` picks
    :func:`default_conditions` (``cycle``) or the GP search over conditions (``bo``,
    :mod:`crystaloop.loop.strategies.condition_bo`), widened by the collapse adjustment."""
    if state.config.strategy.condition_search == "bo":
        from crystaloop.loop.strategies.condition_bo import bo_conditions

        conditions = bo_conditions(state.config, state.iteration, state.seed, state.n_conditions, state.history)
        return widen_conditions(conditions, state.adjustment)
    return default_conditions(state)


def prior_from_predictions(predictions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (n, m) from stacked predictions (n, m, 2)."""
    return predictions[..., 0], predictions[..., 1]
