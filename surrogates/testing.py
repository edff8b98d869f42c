"""Fakes of the surrogate and oracle ports for tests of the layers above (shipped, like
``data/testing.py``): instant, deterministic, with known answers and planted errors.

* :class:`MockSurrogate` — an :class:`~crystaloop.surrogates.base.EmbeddingSurrogate` whose mean is
  a function of the crystal you choose (default: a seeded linear map of composition features),
  with a constant std, an optional planted offset and an OOD score against reference crystals.
* :class:`OffsetSurrogate` — wraps any embedding surrogate and adds a constant to its means (a
  systematically optimistic or pessimistic model, for exploitation tests).
* :class:`MockOracle` — the batch oracle port answering from a function of the crystal, failing
  on request, counting calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets import PROPERTY_UNITS
from crystaloop.data.records import Measurement, Prediction

__all__ = ["MockSurrogate", "OffsetSurrogate", "MockOracle", "composition_features"]

_ELEMENTS = 94


def composition_features(crystal: Crystal) -> np.ndarray:
    """(95,) atom fractions of elements 1–94 plus the volume per atom / 20 Å³ (a cheap embedding)."""
    counts = np.bincount(np.asarray(crystal.numbers) - 1, minlength=_ELEMENTS)[:_ELEMENTS].astype(float)
    volume = abs(float(np.linalg.det(crystal.lattice))) / crystal.n_sites
    return np.concatenate([counts / counts.sum(), [volume / 20.0]])


class MockSurrogate:
    """An instant embedding surrogate with known answers.

    Args:
        properties: names of the m predicted properties.
        units: their units (default: the dataset registry's units, ``""`` if unknown).
        mean_fn: crystal → (m,) means; default a fixed linear map (seeded) of
            :func:`composition_features`.
        std: constant predictive std (same units as the means).
        reference: crystals the OOD score compares with (mean distance to the 3 nearest, over
            the median of that within the reference); ``None`` → OOD scores of 1.
        seed: seed of the default linear map.

    ``calls`` counts the crystals predicted.
    """

    def __init__(
        self,
        properties: Sequence[str] = ("heat_ref",),
        units: Sequence[str] | None = None,
        *,
        mean_fn: Callable[[Crystal], Sequence[float]] | None = None,
        std: float = 0.1,
        reference: Sequence[Crystal] | None = None,
        seed: int = 0,
    ) -> None:
        self._properties = tuple(properties)
        self.units = tuple(units) if units is not None else tuple(PROPERTY_UNITS.get(p, "") for p in self._properties)
        if len(self.units) != len(self._properties):
            raise ValueError(f"one unit per property: {self._properties} vs {self.units}")
        self._weights = np.random.default_rng(seed).normal(size=(_ELEMENTS + 1, len(self._properties)))
        self.mean_fn = mean_fn
        self.std = float(std)
        self._reference = None if reference is None else self.embed(reference)
        self._scale = 1.0
        if self._reference is not None and len(self._reference) > 3:
            self._scale = float(np.median(self._knn(self._reference, exclude_self=True))) or 1.0
        self.calls = 0

    @property
    def name(self) -> str:
        return f"mock:{'+'.join(self._properties)}"

    @property
    def properties(self) -> tuple[str, ...]:
        return self._properties

    def predict(self, crystals: Sequence[Crystal]) -> Prediction:
        self.calls += len(crystals)
        if self.mean_fn is not None:
            mean = np.array([np.atleast_1d(self.mean_fn(c)) for c in crystals], dtype=float).reshape(len(crystals), -1)
        else:
            mean = self.embed(crystals) @ self._weights
        std = np.full_like(mean, self.std)
        return Prediction(mean=mean, std=std, properties=self._properties, units=self.units, model=self.name)

    def embed(self, crystals: Sequence[Crystal]) -> np.ndarray:
        return np.stack([composition_features(c) for c in crystals]) if crystals else np.zeros((0, _ELEMENTS + 1))

    def _knn(self, queries: np.ndarray, *, exclude_self: bool = False) -> np.ndarray:
        assert self._reference is not None
        distances = np.linalg.norm(queries[:, None, :] - self._reference[None, :, :], axis=-1)
        distances = np.sort(distances, axis=1)[:, 1:4] if exclude_self else np.sort(distances, axis=1)[:, :3]
        return distances.mean(axis=1)

    def ood_score(self, crystals: Sequence[Crystal]) -> np.ndarray:
        if self._reference is None:
            return np.ones(len(crystals))
        return self._knn(self.embed(crystals)) / self._scale


class OffsetSurrogate:
    """``base`` with ``offset`` added to every mean (per property when a sequence): a surrogate
    known to be wrong by a fixed amount."""

    def __init__(self, base, offset: float | Sequence[float]) -> None:  # noqa: ANN001 - an EmbeddingSurrogate
        self.base = base
        self.offset = np.broadcast_to(np.asarray(offset, dtype=float), (len(base.properties),))
        self.units = getattr(base, "units", ())

    @property
    def name(self) -> str:
        return f"{self.base.name}{'+'.join(f'{o:+g}' for o in self.offset)}"

    @property
    def properties(self) -> tuple[str, ...]:
        return tuple(self.base.properties)

    def predict(self, crystals: Sequence[Crystal]) -> Prediction:
        p = self.base.predict(crystals)
        return Prediction(p.mean + self.offset[None, :], p.std, p.properties, p.units, self.name)

    def embed(self, crystals: Sequence[Crystal]) -> np.ndarray:
        return self.base.embed(crystals)

    def ood_score(self, crystals: Sequence[Crystal]) -> np.ndarray:
        return self.base.ood_score(crystals)


class MockOracle:
    """The batch oracle port answering ``value_fn(crystal)`` for each of ``properties``.

    Args:
        properties: what it measures; ``value_fn`` returns one value per property.
        value_fn: crystal → values (same order as ``properties``); ``None`` or NaN → a failed
            Measurement ("no value").
        fail_hashes: canonical hashes whose measurements fail ("planted failure").
        name: the oracle name written into each Measurement.

    ``calls`` counts the crystals evaluated, ``seen`` their hashes in order.
    """

    def __init__(
        self,
        properties: Sequence[str],
        value_fn: Callable[[Crystal], Sequence[float | None]],
        *,
        fail_hashes: Iterable[str] = (),
        name: str = "mock",
    ) -> None:
        self.name = name
        self.properties = tuple(properties)
        self.value_fn = value_fn
        self.fail_hashes = set(fail_hashes)
        self.calls = 0
        self.seen: list[str] = []

    def evaluate(self, crystals: Sequence[Crystal]) -> list[Measurement]:
        out = []
        for crystal in crystals:
            self.calls += 1
            key = crystal.canonical_hash()
            self.seen.append(key)
            values = [None] * len(self.properties) if key in self.fail_hashes else list(self.value_fn(crystal))
            for prop, value in zip(self.properties, values, strict=True):
                units = PROPERTY_UNITS.get(prop, "")
                if value is None or not np.isfinite(value):
                    reason = "planted failure" if key in self.fail_hashes else "no value"
                    out.append(Measurement(oracle=self.name, property=prop, value=None, units=units, status="failed", reason=reason))
                else:
                    out.append(Measurement(oracle=self.name, property=prop, value=float(value), units=units))
        return out
