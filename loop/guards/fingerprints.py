"""Cheap structure + composition fingerprints for diversity checks (no neighbour search).

A fingerprint (d = 103 + 1 + 16 = 120) concatenates

* the composition as atomic fractions over Z = 1..103 (sums to 1);
* the cube root of the volume per atom divided by 3 Å (≈ 1 for ordinary solids);
* a histogram of minimum-image pair distances divided by (V/N)^(1/3), 16 Gaussian-smeared bins
  over [0, 2], normalised to sum 1 (a radial-distribution sketch invariant to rotation,
  translation, site order and cell choice up to the minimum-image convention).

Euclidean distance between fingerprints is 0 for the same crystal and grows with composition
and local-geometry differences; two compositions with nothing in common are ≥ √2 apart.

:func:`selection_features` are what the strategies' residual GP works over when no surrogate
embeds the candidates: the fingerprint plus the chemistry of the composition
(:func:`~crystaloop.data.elements.composition_descriptor`), so labels on one composition inform
chemically similar ones (the fingerprint alone knows only which elements are present, not how
alike they are).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from crystaloop.data.crystal import Crystal
from crystaloop.data.elements import COMPOSITION_DIM, composition_descriptors
from crystaloop.data.graphs import minimum_image_distances

__all__ = ["FINGERPRINT_DIM", "SELECTION_DIM", "fingerprint", "fingerprints", "selection_features", "nearest_distance", "vendi_score"]

_N_ELEMENTS = 103
_N_BINS = 16
_CENTRES = np.linspace(0.0, 2.0, _N_BINS)
_WIDTH = _CENTRES[1] - _CENTRES[0]
FINGERPRINT_DIM = _N_ELEMENTS + 1 + _N_BINS
SELECTION_DIM = FINGERPRINT_DIM + COMPOSITION_DIM


def fingerprint(crystal: Crystal) -> np.ndarray:
    """(FINGERPRINT_DIM,) float64 fingerprint of one crystal (see the module docstring)."""
    out = np.zeros(FINGERPRINT_DIM)
    numbers = np.clip(crystal.numbers, 1, _N_ELEMENTS) - 1
    np.add.at(out, numbers, 1.0 / crystal.n_sites)
    scale = (crystal.volume / crystal.n_sites) ** (1.0 / 3.0)
    out[_N_ELEMENTS] = scale / 3.0
    if crystal.n_sites > 1:
        d = minimum_image_distances(crystal)
        pairs = d[np.triu_indices(crystal.n_sites, k=1)] / scale
        weights = np.exp(-0.5 * ((pairs[:, None] - _CENTRES[None, :]) / _WIDTH) ** 2).sum(axis=0)
        out[_N_ELEMENTS + 1 :] = weights / max(weights.sum(), 1e-12)
    return out


def fingerprints(crystals: Sequence[Crystal]) -> np.ndarray:
    """(n, FINGERPRINT_DIM) fingerprints, one row per crystal."""
    if not crystals:
        return np.zeros((0, FINGERPRINT_DIM))
    return np.stack([fingerprint(c) for c in crystals])


def selection_features(crystals: Sequence[Crystal]) -> np.ndarray:
    """(n, SELECTION_DIM) fingerprints followed by composition descriptors, one row per crystal
    (the strategies' GP inputs without a surrogate embedding; see the module docstring)."""
    if not crystals:
        return np.zeros((0, SELECTION_DIM))
    return np.concatenate([fingerprints(crystals), composition_descriptors(crystals)], axis=1)


def nearest_distance(query: np.ndarray, reference: np.ndarray) -> float:
    """Smallest Euclidean distance from ``query`` (d,) to the rows of ``reference`` (r, d); inf if r = 0."""
    if len(reference) == 0:
        return float("inf")
    return float(np.sqrt(((reference - query[None, :]) ** 2).sum(axis=1)).min())


def vendi_score(features: np.ndarray, length_scale: float = 0.1) -> float:
    """Vendi score of a set (Friedman & Dieng, 2023): exp of the entropy of K/n's eigenvalues.

    K is an RBF kernel exp(-|x-y|² / (2 ℓ²)) over the rows of ``features`` (n, d). The result
    is the "effective number of distinct items", between 1 (all identical) and n (all unlike).
    """
    n = len(features)
    if n == 0:
        return 0.0
    d2 = ((features[:, None, :] - features[None, :, :]) ** 2).sum(axis=-1)
    eigenvalues = np.linalg.eigvalsh(np.exp(-d2 / (2.0 * length_scale**2)) / n)
    eigenvalues = eigenvalues[eigenvalues > 1e-12]
    return float(np.exp(-(eigenvalues * np.log(eigenvalues)).sum()))
