"""Which evaluation rows a surrogate trained on, by canonical hash (the id the store uses).

New checkpoints record the canonical hashes of every training structure (calibration split
included) under ``metadata["train_structure_hashes"]`` (16-hex-digit prefixes, sorted). Older
ones, the shipped ones among them, record only the name of their training data
(``metadata["train_data"]``, e.g. ``perov_5/train``) and its content hash; for those the data is
read again and hashed, and the basis says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from crystaloop.data.datasets import CrystalDataset, load_dataset
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


def training_overlap(metadata: dict, dataset: CrystalDataset) -> TrainingOverlap:
    """Which rows of ``dataset`` are in the training data a checkpoint's ``metadata`` records."""
    recorded = metadata.get(TRAIN_HASHES_KEY)
    if recorded:
        hashes, basis = set(recorded), f"{len(recorded)} training-structure hashes recorded in the checkpoint"
    else:
        source = metadata.get("train_data")
        if not source:
            return TrainingOverlap(None, "the checkpoint records neither training hashes nor its training data")
        try:
            train = load_dataset(source)
        except CrystaloopError as exc:
            return TrainingOverlap(None, f"training data {source!r} recorded in the checkpoint is not readable here ({exc})")
        hashes = set(structure_hashes(train))
        same = train.content_hash == metadata.get("train_data_hash")
        basis = (f"training data {source!r} re-read and hashed ({len(train)} structures"
                 + ("" if same else "; its content hash differs from the checkpoint's, e.g. other reader settings") + ")")
    seen = np.array([c.canonical_hash()[:HASH_PREFIX] in hashes for c in dataset.crystals], dtype=bool)
    return TrainingOverlap(seen, basis)
