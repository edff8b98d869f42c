"""The surrogate port: what the loop asks of a property model, and how several combine.

A :class:`Surrogate` predicts named properties of crystals with an uncertainty::

    prediction = surrogate.predict(crystals)   # Prediction: mean, std (n, m); properties, units

The loop scores candidates with an :class:`EmbeddingSurrogate`, which can also place crystals in
a learned space (``embed``, for the GP residual correction and the diversity of picks) and say how
far they lie from its training data (``ood_score``, for the exploitation guard). A
:class:`TrainableSurrogate` can be fitted on labelled crystals.

Implemented by :class:`~crystaloop.surrogates.ensemble.PropertyEnsemble` (a deep ensemble, all
three), :class:`~crystaloop.surrogates.gp.GPSurrogate` (a GP head on another surrogate's
embeddings: trainable), :class:`SurrogateSet` (several side by side) and the loop's online
surrogate (:class:`~crystaloop.loop.online.OnlineSurrogate`). The fake for tests of the layers
above is :class:`~crystaloop.surrogates.testing.MockSurrogate` (botorch's ``MockModel`` is the
model for shipping it).

Units: every property's unit string travels in ``Prediction.units`` (``"eV/atom"``, ``"eV"``,
``"GPa"``); std is in the same units as the mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from crystaloop.data.crystal import Crystal
from crystaloop.data.records import Prediction

__all__ = ["Surrogate", "EmbeddingSurrogate", "TrainableSurrogate", "SurrogateSet"]


@runtime_checkable
class Surrogate(Protocol):
    """Predicts ``properties`` of crystals: ``predict(crystals)`` → :class:`Prediction` (n, m)."""

    @property
    def name(self) -> str: ...

    @property
    def properties(self) -> tuple[str, ...]: ...

    def predict(self, crystals: Sequence[Crystal]) -> Prediction: ...


@runtime_checkable
class EmbeddingSurrogate(Surrogate, Protocol):
    """A surrogate with a learned crystal space: what the loop's scoring and guards need.

    ``embed(crystals)`` → (n, d) float array; ``ood_score(crystals)`` → (n,) non-negative, about 1
    for crystals like the training data and larger away from it (all ones when the surrogate
    keeps no reference to compare with).
    """

    def embed(self, crystals: Sequence[Crystal]) -> np.ndarray: ...

    def ood_score(self, crystals: Sequence[Crystal]) -> np.ndarray: ...


@runtime_checkable
class TrainableSurrogate(Surrogate, Protocol):
    """A surrogate that learns from labels: ``fit(crystals, targets)`` with targets (n, m) in the
    units of :attr:`properties` (NaN where a property is unknown), returning itself."""

    def fit(self, crystals: Sequence[Crystal], targets: np.ndarray) -> TrainableSurrogate: ...


@dataclass
class SurrogateSet:
    """Several embedding surrogates side by side: predictions and embeddings concatenated, the
    OOD score the largest of the members'."""

    members: list[EmbeddingSurrogate] = field(default_factory=list)

    @property
    def properties(self) -> tuple[str, ...]:
        return tuple(p for m in self.members for p in m.properties)

    @property
    def name(self) -> str:
        return "+".join(m.name for m in self.members)

    def predict(self, crystals: Sequence[Crystal]) -> Prediction:
        parts = [m.predict(crystals) for m in self.members]
        return Prediction(
            mean=np.concatenate([p.mean for p in parts], axis=1),
            std=np.concatenate([p.std for p in parts], axis=1),
            properties=tuple(q for p in parts for q in p.properties),
            units=tuple(u for p in parts for u in p.units),
            model=self.name,
        )

    def embed(self, crystals: Sequence[Crystal]) -> np.ndarray:
        return np.concatenate([m.embed(crystals) for m in self.members], axis=1)

    def ood_score(self, crystals: Sequence[Crystal]) -> np.ndarray:
        if not self.members:
            return np.ones(len(crystals))
        return np.max(np.stack([m.ood_score(crystals) for m in self.members]), axis=0)
