"""GP heads for Bayesian optimisation on learned crystal embeddings.

A property network's embedding (n, D) is projected onto its first ``n_components`` principal
directions (fitted on the training embeddings; a GP in tens of dimensions is better conditioned
than in hundreds), then a botorch GP is fitted with input normalisation and output
standardisation handled by botorch transforms:

* up to ``max_exact`` points: an exact ``SingleTaskGP`` (Matérn-5/2 ARD kernel);
* beyond: ``SingleTaskVariationalGP`` with ``inducing_points`` inducing points, so pools of tens
  of thousands of labelled structures stay tractable.

``fit(..., offsets=G)`` adds a per-group term: G (n, g) indicator columns (e.g. element
presence, :func:`~crystaloop.data.elements.element_presence`) enter unnormalised through a
linear kernel added to the one on the projected embedding, so the target is modelled as a smooth
function of the embedding plus one offset per group (Gaussian, its variance fitted with the other
hyperparameters). Labels on a few crystals holding an element then move the prediction of every
crystal holding it, and a group no label holds keeps the offset's prior variance (uncertain).

:attr:`GPHead.model` is a botorch ``Model`` over the projected features, so acquisition functions
(qLogNoisyEI, qLogNEHVI) in the loop use it directly on ``GPHead.features(embeddings)``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from crystaloop.data.crystal import Crystal
from crystaloop.data.errors import CrystaloopError
from crystaloop.data.records import Prediction
from crystaloop.data.seeding import restores_torch_rng

__all__ = ["GPHeadConfig", "GPHead", "GPSurrogate"]

logger = logging.getLogger(__name__)


class GPHeadConfig(BaseModel):
    """Settings of a :class:`GPHead`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_components: int = Field(16, gt=0, description="PCA dimensions fed to the GP")
    max_exact: int = Field(2000, gt=0, description="largest training set for an exact GP")
    inducing_points: int = Field(256, gt=0, description="inducing points of the variational GP")
    variational_steps: int = Field(300, gt=0, description="Adam steps fitting the variational GP")
    seed: int = 0


def _fit_variational(mll, *, steps: int) -> None:  # noqa: ANN001
    """Full-batch Adam on the negative ELBO (L-BFGS over inducing points is slow on CPUs)."""
    model = mll.model
    model.train()
    mll.likelihood.train()
    optimizer = torch.optim.Adam(mll.parameters(), lr=0.05)
    for _ in range(steps):
        optimizer.zero_grad()
        output = model(*model.train_inputs)  # botorch stores the normalised inputs and standardised targets here
        loss = -mll(output, model.train_targets).sum()
        loss.backward()
        optimizer.step()


@dataclass
class _Projection:
    centre: np.ndarray  # (D,)
    components: np.ndarray  # (D, k)

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        return (np.asarray(embeddings, dtype=np.float64) - self.centre) @ self.components


def _embedding_plus_offsets(k: int, g: int, outputs: int):  # noqa: ANN202 - a gpytorch kernel
    """botorch's default kernel on the k projected dimensions plus a linear kernel on the g
    indicator columns after them (one batch per output, as SingleTaskGP models T outputs)."""
    from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
    from gpytorch.kernels import LinearKernel

    batch = torch.Size([outputs]) if outputs > 1 else torch.Size([])
    smooth = get_covar_module_with_dim_scaled_prior(ard_num_dims=k, batch_shape=batch, active_dims=list(range(k)))
    return smooth + LinearKernel(batch_shape=batch, active_dims=list(range(k, k + g)))


class GPHead:
    """A GP on projected embeddings; see the module docstring."""

    def __init__(self, config: GPHeadConfig | None = None) -> None:
        self.config = config or GPHeadConfig()
        self._projection: _Projection | None = None
        self.n_offsets = 0  # indicator columns of the per-group term (0: none)
        self.model = None  # botorch Model once fitted

    @property
    def is_exact(self) -> bool:
        from botorch.models import SingleTaskGP

        return isinstance(self.model, SingleTaskGP)

    def features(self, embeddings: np.ndarray, offsets: np.ndarray | None = None) -> torch.Tensor:
        """(n, k + g) float64 GP inputs for embeddings (n, D): the k projected dimensions, then the
        g offset indicator columns (n, g) when the head was fitted with them."""
        if self._projection is None:
            raise CrystaloopError("GPHead.features called before fit")
        x = self._projection(embeddings)
        if self.n_offsets:
            if offsets is None:
                raise CrystaloopError(f"this GP head was fitted with {self.n_offsets} offset columns; pass offsets (n, {self.n_offsets})")
            groups = np.asarray(offsets, dtype=np.float64)
            if groups.shape != (len(x), self.n_offsets):
                raise ValueError(f"offsets must be (n, g) = ({len(x)}, {self.n_offsets}), got {groups.shape}")
            x = np.concatenate([x, groups], axis=1)
        return torch.from_numpy(x)

    @restores_torch_rng
    def fit(self, embeddings: np.ndarray, targets: np.ndarray, offsets: np.ndarray | None = None) -> GPHead:
        """Fit on embeddings (n, D) and targets (n,) or (n, T); rows with NaN targets are dropped.
        ``offsets`` (n, g): indicator columns of the per-group term (module docstring)."""
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from botorch.models.transforms import Normalize, Standardize

        x = np.asarray(embeddings, dtype=np.float64)
        y = np.asarray(targets, dtype=np.float64)
        y = y[:, None] if y.ndim == 1 else y
        if x.ndim != 2 or len(x) != len(y):
            raise ValueError(f"embeddings (n, D) and targets (n, T) must agree, got {x.shape} and {y.shape}")
        groups = None if offsets is None else np.asarray(offsets, dtype=np.float64)
        if groups is not None and (groups.ndim != 2 or len(groups) != len(x)):
            raise ValueError(f"offsets must be (n, g) with n = {len(x)} rows, got {groups.shape}")
        keep = np.isfinite(y).all(axis=1) & np.isfinite(x).all(axis=1)
        if groups is not None:
            keep &= np.isfinite(groups).all(axis=1)
        x, y = x[keep], y[keep]
        if len(x) < 2:
            raise CrystaloopError(f"a GP head needs at least 2 labelled points, got {len(x)}")
        centre = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - centre, full_matrices=False)
        k = min(self.config.n_components, vt.shape[0], len(x) - 1)
        self._projection = _Projection(centre, vt[:k].T)
        self.n_offsets = 0 if groups is None else groups.shape[1]
        train_x = self.features(x, None if groups is None else groups[keep])
        train_y = torch.from_numpy(y)
        torch.manual_seed(self.config.seed)
        covar_module = _embedding_plus_offsets(k, self.n_offsets, y.shape[1]) if self.n_offsets else None
        normalize = Normalize(d=k + self.n_offsets, indices=list(range(k)))  # indicator columns stay 0/1
        if len(x) <= self.config.max_exact:
            model = SingleTaskGP(train_x, train_y, covar_module=covar_module, input_transform=normalize, outcome_transform=Standardize(m=y.shape[1]))
            from gpytorch.mlls import ExactMarginalLogLikelihood

            mll = ExactMarginalLogLikelihood(model.likelihood, model)
        else:
            from botorch.models.approximate_gp import SingleTaskVariationalGP
            from gpytorch.mlls import VariationalELBO

            model = SingleTaskVariationalGP(
                train_x,
                train_y,
                inducing_points=min(self.config.inducing_points, len(x)),
                covar_module=covar_module,
                input_transform=normalize,
                outcome_transform=Standardize(m=y.shape[1]),
            )
            mll = VariationalELBO(model.likelihood, model.model, num_data=len(x))
            _fit_variational(mll, steps=self.config.variational_steps)
            mll = None
        if mll is not None:
            fit_gpytorch_mll(mll)
        model.eval()
        self.model = model
        logger.info("fitted %s GP head on %d points in %d dimensions", "exact" if self.is_exact else "variational", len(x), k)
        return self

    @torch.no_grad()
    def predict(self, embeddings: np.ndarray, offsets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and std (n, T) of the latent function, in the targets' units
        (``offsets`` (n, g): required when the head was fitted with them)."""
        if self.model is None:
            raise CrystaloopError("GPHead.predict called before fit")
        posterior = self.model.posterior(self.features(embeddings, offsets))
        return posterior.mean.numpy(), posterior.variance.clamp_min(0).sqrt().numpy()


class GPSurrogate:
    """A :class:`GPHead` on another surrogate's embeddings, behind the Surrogate port
    (:class:`~crystaloop.surrogates.base.TrainableSurrogate`).

    ``fit(crystals, targets)`` embeds the crystals with ``encoder`` and fits the head on targets
    (n, m) in the units of ``properties``; ``predict`` gives the GP's posterior mean and std.

    Args:
        encoder: anything with ``embed(crystals) -> (n, d)`` (a trained ensemble).
        properties, units: the m targets the head learns and their unit strings.
        config: the head's settings.
    """

    def __init__(self, encoder, properties: Sequence[str], units: Sequence[str], config: GPHeadConfig | None = None) -> None:  # noqa: ANN001 - an EmbeddingSurrogate
        if len(properties) != len(units) or not properties:
            raise ValueError(f"a GP surrogate needs one unit per property, got {list(properties)} and {list(units)}")
        self.encoder = encoder
        self._properties = tuple(properties)
        self.units = tuple(units)
        self.head = GPHead(config)

    @property
    def name(self) -> str:
        return f"gp[{getattr(self.encoder, 'name', 'encoder')}]:{'+'.join(self._properties)}"

    @property
    def properties(self) -> tuple[str, ...]:
        return self._properties

    def fit(self, crystals: Sequence[Crystal], targets: np.ndarray) -> GPSurrogate:
        """Fit the head on ``targets`` (n, m) (rows with a NaN are dropped)."""
        values = np.asarray(targets, dtype=np.float64).reshape(len(crystals), -1)
        if values.shape[1] != len(self._properties):
            raise ValueError(f"targets need {len(self._properties)} columns ({list(self._properties)}), got {values.shape[1]}")
        self.head.fit(self.encoder.embed(crystals), values)
        return self

    def predict(self, crystals: Sequence[Crystal]) -> Prediction:
        mean, std = self.head.predict(self.encoder.embed(crystals))
        return Prediction(mean=mean, std=std, properties=self._properties, units=self.units, model=self.name)
