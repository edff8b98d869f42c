"""The loop's online surrogate: the shipped ensemble's prediction as a prior mean plus a GP head
fitted on the oracle-measured residuals, refitted whenever labels change.

For objective column j: ``prior_j`` is the surrogate's predicted mean (0 where the surrogate does
not predict that property, e.g. e_above_hull). Columns with at least ``min_labels`` measured
values are *modelled*: a :class:`~crystaloop.surrogates.gp.GPHead` on the embeddings is fitted
to ``measured − prior`` (one multi-output GP over the modelled columns), and the posterior is
``prior + GP mean`` with the GP's std. Other columns keep the surrogate's mean and std.

With ``element_offsets`` and labels that carry element presence (:attr:`Labels.elements`), the GP
adds one offset per element (:class:`~crystaloop.surrogates.gp.GPHead`'s per-group term): the
residual is a smooth function of the embedding plus a sum of per-element offsets, so a prior that
is wrong for every crystal holding some element is corrected for all of them from a few labels.
"""

from __future__ import annotations

import logging

import numpy as np

from crystaloop.data.errors import CrystaloopError
from crystaloop.loop.strategies.base import Labels, Pool, StrategySettings

__all__ = ["ResidualGP", "pool_elements", "pending_elements"]

logger = logging.getLogger(__name__)


class ResidualGP:
    """See the module docstring; ``fit`` then ``posterior``.

    Args:
        n_components: PCA dimensions of the GP inputs.
        min_labels: measured values a column needs to be modelled.
        seed: GP fitting seed.
        element_offsets: add the per-element term when the labels carry element presence.
    """

    def __init__(self, n_components: int = 8, min_labels: int = 4, seed: int = 0, *, element_offsets: bool = False) -> None:
        self.n_components = n_components
        self.min_labels = min_labels
        self.seed = seed
        self.element_offsets = element_offsets
        self.uses_elements = False
        self.head = None
        self.modelled: np.ndarray = np.zeros(0, dtype=np.int64)
        self.rows: np.ndarray = np.zeros(0, dtype=np.int64)

    @classmethod
    def for_strategy(cls, settings: StrategySettings, seed: int) -> ResidualGP:
        """The residual GP a strategy's settings describe (``gp_components``, ``min_labels``,
        ``gp_element_offsets``)."""
        return cls(settings.gp_components, settings.min_labels, seed, element_offsets=settings.gp_element_offsets)

    @property
    def fitted(self) -> bool:
        return self.head is not None

    def fit(self, labels: Labels) -> ResidualGP:
        """Fit the GP on the labelled residuals; stays unfitted with too few labels."""
        from crystaloop.surrogates.gp import GPHead, GPHeadConfig

        values = labels.values
        counts = np.isfinite(values).sum(axis=0) if len(values) else np.zeros(values.shape[1], dtype=int)
        self.modelled = np.flatnonzero(counts >= self.min_labels)
        self.head = None
        if self.modelled.size == 0:
            return self
        residual = values[:, self.modelled] - np.nan_to_num(labels.prior[:, self.modelled])
        self.rows = np.flatnonzero(np.isfinite(residual).all(axis=1))
        if len(self.rows) < self.min_labels:
            self.modelled = np.zeros(0, dtype=np.int64)
            return self
        config = GPHeadConfig(n_components=self.n_components, seed=self.seed)
        offsets = labels.elements[self.rows] if self.element_offsets and labels.elements is not None else None
        self.uses_elements = offsets is not None
        self.head = GPHead(config).fit(labels.embeddings[self.rows], residual[self.rows], offsets=offsets)
        logger.debug("residual GP on %d labels, columns %s", len(self.rows), self.modelled.tolist())
        return self

    def offsets(self, elements: np.ndarray | None) -> np.ndarray | None:
        """The element presence the fitted head needs with its inputs (``None`` when it has no
        per-element term); raises when it needs them and none are given."""
        if not self.uses_elements:
            return None
        if elements is None:
            raise CrystaloopError("this residual GP has a per-element term; pass the element presence (n, 119) of the structures")
        return elements

    def posterior(self, embeddings: np.ndarray, prior_mean: np.ndarray, prior_std: np.ndarray,
                  elements: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std (n, m) at ``embeddings`` (n, D) given the surrogate's (n, m) prior;
        ``elements`` (n, 119): the structures' element presence (needed with the per-element term)."""
        mean = np.array(prior_mean, dtype=np.float64, copy=True)
        std = np.array(prior_std, dtype=np.float64, copy=True)
        if self.head is None or len(embeddings) == 0:
            return mean, std
        gp_mean, gp_std = self.head.predict(embeddings, self.offsets(elements))
        mean[:, self.modelled] = np.nan_to_num(mean[:, self.modelled]) + gp_mean
        std[:, self.modelled] = gp_std
        return mean, std


def pool_elements(gp: ResidualGP, pool: Pool) -> np.ndarray | None:
    """(n, 119) element presence of the pool's candidates when ``gp`` has a per-element term."""
    return pool.candidate_elements() if gp.uses_elements else None


def pending_elements(gp: ResidualGP, pool: Pool) -> np.ndarray | None:
    """(P, 119) element presence of the pool's pending picks when ``gp`` has a per-element term."""
    if not gp.uses_elements:
        return None
    if pool.pending_elements is None:
        raise CrystaloopError("the pool has pending picks but not their element presence (Pool.pending_elements)")
    return pool.pending_elements
