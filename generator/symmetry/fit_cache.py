"""On-disk cache of fitted template priors, keyed by the training crystals and the fit settings.

Fitting a :class:`~crystaloop.generator.symmetry.prior.TemplatePrior` describes every training
crystal with spglib and chooses the kernel by leave-one-out: 40–55 s on perov_5/train on two
cores, paid again by every ``crystaloop generate --generator template`` call before this cache.
An entry holds the symmetric descriptions and the chosen bandwidth / identity weight (with the
leave-one-out table), as JSON, so reading one back builds the same prior without spglib or the
fit. The key is the sha256 of :data:`FIT_CACHE_VERSION`, the fit settings and every training
crystal's lattice, coordinates and atomic numbers: a changed dataset or setting refits.

Entries live in ``$CRYSTALOOP_CACHE_DIR/templates`` (by default ``~/.cache/crystaloop/datasets/templates``,
beside the dataset cache). A corrupt or foreign entry is ignored with a warning and refitted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets.cache import cache_dir
from crystaloop.data.errors import CrystaloopError
from crystaloop.generator.symmetry.representation import Orbit, SymmetricCrystal

__all__ = ["FIT_CACHE_VERSION", "CachedFit", "fit_key", "load_fit", "save_fit", "templates_cache_dir"]

logger = logging.getLogger(__name__)

FIT_CACHE_VERSION = "1"  # bump when describe(), the prior's fit or this format changes


@dataclass(frozen=True)
class CachedFit:
    """What a fitted prior needs: descriptions, kernel choice and the leave-one-out table."""

    described: list[SymmetricCrystal]
    bandwidth: float
    identity_weight: float
    loo_accuracy: dict[tuple[float, float], float]


def templates_cache_dir() -> Path:
    """Folder of cached template fits (inside the dataset cache, so ``$CRYSTALOOP_CACHE_DIR`` moves it)."""
    return cache_dir() / "templates"


def fit_key(crystals: Sequence[Crystal], settings: dict[str, object]) -> str:
    """sha256 over the cache version, the fit ``settings`` (JSON, sorted keys) and every crystal's arrays."""
    digest = hashlib.sha256(f"crystaloop-template-fit-{FIT_CACHE_VERSION}".encode())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for crystal in crystals:
        for array in (np.asarray(crystal.lattice, dtype=np.float64), np.asarray(crystal.frac_coords, dtype=np.float64),
                      np.asarray(crystal.numbers, dtype=np.int64)):
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _entry(key: str) -> Path:
    return templates_cache_dir() / f"{key}.json"


def save_fit(key: str, fit: CachedFit) -> Path:
    """Write ``fit`` under ``key`` atomically (a crash never leaves a half-written entry)."""
    path = _entry(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "version": FIT_CACHE_VERSION,
        "bandwidth": fit.bandwidth,
        "identity_weight": fit.identity_weight,
        "loo_accuracy": [[h, w, score] for (h, w), score in fit.loo_accuracy.items()],
        "described": [{"space_group": s.space_group, "lattice": list(s.lattice),
                       "orbits": [[o.letter, o.multiplicity, o.element, [float(x) for x in o.representative]] for o in s.orbits]}
                      for s in fit.described],
    }
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
        json.dump(payload, handle)
    os.replace(handle.name, path)
    return path


def load_fit(key: str) -> CachedFit | None:
    """The fit stored under ``key``, or ``None`` when there is none or it cannot be read."""
    path = _entry(key)
    if not path.exists():
        return None
    try:
        payload = json.loads(path.read_text())
        if payload.get("version") != FIT_CACHE_VERSION:
            raise ValueError(f"version {payload.get('version')!r}, expected {FIT_CACHE_VERSION!r}")
        described = [SymmetricCrystal(int(s["space_group"]), tuple(float(x) for x in s["lattice"]),
                                      tuple(Orbit(str(letter), int(mult), str(element), np.asarray(rep, dtype=np.float64))
                                            for letter, mult, element, rep in s["orbits"]))
                     for s in payload["described"]]
        return CachedFit(described=described, bandwidth=float(payload["bandwidth"]), identity_weight=float(payload["identity_weight"]),
                         loo_accuracy={(float(h), float(w)): float(score) for h, w, score in payload["loo_accuracy"]})
    except (OSError, ValueError, KeyError, TypeError, CrystaloopError) as exc:  # a corrupt entry costs a refit, never a failure
        logger.warning("ignoring the unreadable template-fit cache entry %s (%s); refitting", path, exc)
        return None
