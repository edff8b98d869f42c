"""The three views of a dataset, computed once and cached on disk: patterns, texts, text features.

:func:`prepare_views` turns a :class:`~crystaloop.data.datasets.CrystalDataset` into
:class:`DatasetViews`: clean XRD patterns on the shared grid (B, P), per crystal the full
description and ``variants`` training variants, and their frozen MiniLM layer features
(B, 1 + variants, 7, 384) stored as float16. MiniLM is the slow part (≈ 40–80 ms per text on one
core), so results are cached in ``<dataset cache>/multimodal/<key>.npz``, keyed by the dataset's
content hash and ids, the grid, the describer settings and ``FEATURES_VERSION``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crystaloop.data.datasets import CrystalDataset
from crystaloop.data.datasets.cache import cache_dir
from crystaloop.data.xrd_grid import DEFAULT_GRID, PatternGrid
from crystaloop.multimodal.describe import describe_many
from crystaloop.multimodal.xrd import simulate_patterns

__all__ = ["FEATURES_VERSION", "DatasetViews", "prepare_views", "views_cache_dir"]

logger = logging.getLogger(__name__)

FEATURES_VERSION = "1"


@dataclass
class DatasetViews:
    """Patterns (B, P) float32, texts (B lists of 1 + variants), text features (B, V, 7, 384) float16."""

    name: str
    patterns: np.ndarray
    texts: list[list[str]]
    text_features: np.ndarray

    def __len__(self) -> int:
        return len(self.patterns)


def views_cache_dir() -> Path:
    """Folder of cached views (inside the dataset cache, so ``$CRYSTALOOP_CACHE_DIR`` moves it)."""
    return cache_dir() / "multimodal"


def _key(dataset: CrystalDataset, grid: PatternGrid, variants: int, seed: int) -> str:
    payload = {
        "version": FEATURES_VERSION,
        "data": dataset.content_hash,  # a subset keeps its parent's hash: the ids tell subsets apart
        "ids": hashlib.sha256("\x1f".join(dataset.ids).encode()).hexdigest(),
        "grid": grid.model_dump(),
        "variants": variants,
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def prepare_views(
    dataset: CrystalDataset,
    *,
    grid: PatternGrid = DEFAULT_GRID,
    variants: int = 1,
    seed: int = 0,
    progress: bool = False,
    use_cache: bool = True,
) -> DatasetViews:
    """Patterns, descriptions and MiniLM features of every crystal of ``dataset`` (cached)."""
    path = views_cache_dir() / f"{_key(dataset, grid, variants, seed)}.npz"
    if use_cache and path.is_file():
        with np.load(path, allow_pickle=False) as stored:
            texts = json.loads(str(stored["texts"]))
            logger.info("views of %s read from cache %s", dataset.name, path)
            return DatasetViews(dataset.name, stored["patterns"], texts, stored["text_features"])
    from crystaloop.multimodal.text import MiniLMLayerFeatures

    patterns = simulate_patterns(dataset.crystals, grid, progress=progress)
    texts = describe_many(dataset.crystals, variants=variants, seed=seed, progress=progress)
    flat = [t for group in texts for t in group]
    order = np.argsort([len(t) for t in flat])  # similar lengths per batch: less padding
    features = np.empty((len(flat), 7, 384), dtype=np.float16)
    features[order] = MiniLMLayerFeatures()([flat[i] for i in order], progress=progress).astype(np.float16)
    views = DatasetViews(dataset.name, patterns, texts, features.reshape(len(texts), 1 + variants, 7, 384))
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial.npz")
        np.savez(partial, patterns=views.patterns, texts=json.dumps(texts), text_features=views.text_features)
        partial.replace(path)
        logger.info("views of %s cached at %s", dataset.name, path)
    return views
