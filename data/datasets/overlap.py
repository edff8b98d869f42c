"""Which evaluation rows a model trained on, by canonical hash (the id the store uses).

Surrogate checkpoints record the canonical hashes of every training structure (calibration split
included) under ``metadata["train_structure_hashes"]`` (16-hex-digit prefixes, sorted). Older
ones, the shipped ones among them, and generator checkpoints record the name of their training
data (``perov_5/train``, a path); for those the data is read again and hashed, and the basis
says so. ``surrogate eval`` and ``generator eval`` warn with it and report the held-out rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from crystaloop.data.datasets.base import CrystalDataset
from crystaloop.data.errors import CrystaloopError

__all__ = ["HASH_PREFIX", "TRAIN_HASHES_KEY", "TrainingOverlap", "structure_hashes", "training_overlap"]

logger = logging.getLogger(__name__)

TRAIN_HASHES_KEY = "train_structure_hashes"
HASH_PREFIX = 16
"""Hex digits of the canonical hash kept per training structure (64 bits: no collisions at dataset sizes)."""


def structure_hashes(dataset: CrystalDataset) -> list[str]:
    """Sorted canonical-hash prefixes of a dataset's structures (what checkpoints record)."""
    return sorted({c.canonical_hash()[:HASH_PREFIX] for c in dataset.crystals})


@dataclass(frozen=True)
class TrainingOverlap:
    """Evaluation rows seen in training: ``seen[i]`` is True when row i's structure trained the model.

    ``basis`` says where the training hashes came from; ``seen`` is None when they could not be
    found (a checkpoint without hashes whose training data is no longer readable).
    """

    seen: np.ndarray | None
    basis: str

    @property
    def count(self) -> int:
        return 0 if self.seen is None else int(self.seen.sum())


def training_overlap(
    dataset: CrystalDataset, *, recorded: list[str] | None = None, source: str | None = None, source_hash: str | None = None
) -> TrainingOverlap:
    """Which rows of ``dataset`` a model trained on: from its ``recorded`` hashes, else by reading
    its training data ``source`` again (``source_hash``, the content hash a checkpoint recorded, is
    compared with the data read now)."""
    from crystaloop.data.datasets.loading import load_dataset

    if recorded:
        hashes, basis = set(recorded), f"{len(recorded)} training-structure hashes recorded in the checkpoint"
    else:
        if not source:
            return TrainingOverlap(None, "the checkpoint records neither training hashes nor its training data")
        try:
            train = load_dataset(source)
        except CrystaloopError as exc:
            return TrainingOverlap(None, f"training data {source!r} recorded in the checkpoint is not readable here ({exc})")
        hashes = set(structure_hashes(train))
        differs = source_hash is not None and train.content_hash != source_hash
        basis = (f"training data {source!r} re-read and hashed ({len(train)} structures"
                 + ("; its content hash differs from the checkpoint's, e.g. other reader settings" if differs else "") + ")")
    seen = np.array([c.canonical_hash()[:HASH_PREFIX] in hashes for c in dataset.crystals], dtype=bool)
    return TrainingOverlap(seen, basis)
