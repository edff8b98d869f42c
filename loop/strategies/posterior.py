"""The loop's online surrogate: the shipped ensemble's prediction as a prior mean plus a GP head
fitted on the oracle-measured residuals, refitted whenever labels change.

For objective column j: ``prior_j`` is the surrogate's predicted mean (0 where the surrogate does
not predict that property, e.g. e_above_hull). Columns with at least ``min_labels`` measured
values are *modelled*: a :class:`~crystaloop.surrogates.gp.GPHead` on the embeddings is fitted
to ``measured − prior`` (one multi-output GP over the modelled columns), and the posterior is
``prior + GP mean`` with the GP's std. Other columns keep the surrogate's mean and std.
"""

from __future__ import annotations

import logging

import numpy as np

from crystaloop.loop.strategies.base import Labels

__all__ = ["ResidualGP"]

logger = logging.getLogger(__name__)


class ResidualGP:
    """See the module docstring; ``fit`` then ``posterior``.

    Args:
        n_components: PCA dimensions of the GP inputs.
        min_labels: measured values a column needs to be modelled.
        seed: GP fitting seed.
    """

    def __init__(self, n_components: int = 8, min_labels: int = 4, seed: int = 0) -> None:
        self.n_components = n_components
        self.min_labels = min_labels
        self.seed = seed
        self.head = None
        self.modelled: np.ndarray = np.zeros(0, dtype=np.int64)
        self.rows: np.ndarray = np.zeros(0, dtype=np.int64)

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
        self.head = GPHead(config).fit(labels.embeddings[self.rows], residual[self.rows])
        logger.debug("residual GP on %d labels, columns %s", len(self.rows), self.modelled.tolist())
        return self

    def posterior(self, embeddings: np.ndarray, prior_mean: np.ndarray, prior_std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std (n, m) at ``embeddings`` (n, D) given the surrogate's (n, m) prior."""
        mean = np.array(prior_mean, dtype=np.float64, copy=True)
        std = np.array(prior_std, dtype=np.float64, copy=True)
        if self.head is None or len(embeddings) == 0:
            return mean, std
        gp_mean, gp_std = self.head.predict(embeddings)
        mean[:, self.modelled] = np.nan_to_num(mean[:, self.modelled]) + gp_mean
        std[:, self.modelled] = gp_std
        return mean, std
