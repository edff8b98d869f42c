"""On-disk cache of parsed datasets, keyed by the input's content hash.

Parsing CIFs costs milliseconds per structure; a cached dataset reloads in a fraction of a second.
The key is the sha256 of the input bytes (every file of a folder, in order), the reader settings
and :data:`CACHE_VERSION`, so editing a file or changing a limit re-parses. Entries are plain
``.npz`` archives read with ``allow_pickle=False``: a cache file cannot execute code.

The cache lives in ``$CRYSTALOOP_CACHE_DIR`` or ``~/.cache/crystaloop/datasets``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets.base import CrystalDataset, RowError

__all__ = ["CACHE_VERSION", "cache_dir", "content_hash", "load_cached", "save_cached"]

logger = logging.getLogger(__name__)

CACHE_VERSION = "2"  # 2: readers re-orient left-handed cells, pre-check sizes and POSCAR counts


def cache_dir() -> Path:
    """Folder holding cached datasets (created on first write)."""
    root = os.environ.get("CRYSTALOOP_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "crystaloop" / "datasets"


def content_hash(files: Iterable[Path], settings: dict[str, object]) -> str:
    """sha256 over the files' names and bytes plus the reader settings (JSON, sorted keys)."""
    digest = hashlib.sha256(f"crystaloop-dataset-cache-{CACHE_VERSION}".encode())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for file in files:
        digest.update(file.name.encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _entry(key: str) -> Path:
    return cache_dir() / f"{key}.npz"


def save_cached(dataset: CrystalDataset, key: str) -> Path:
    """Write ``dataset`` under ``key`` atomically (a crash never leaves a half-written entry)."""
    path = _entry(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    crystals = dataset.crystals
    arrays: dict[str, np.ndarray] = {
        "lattices": np.stack([c.lattice for c in crystals]) if crystals else np.zeros((0, 3, 3)),
        "num_atoms": np.array([c.n_sites for c in crystals], dtype=np.int64),
        "frac_coords": np.concatenate([c.frac_coords for c in crystals]) if crystals else np.zeros((0, 3)),
        "numbers": np.concatenate([c.numbers for c in crystals]) if crystals else np.zeros(0, dtype=np.int64),
        "meta": np.array(
            json.dumps(
                {
                    "name": dataset.name,
                    "ids": dataset.ids,
                    "sources": dataset.sources,
                    "errors": [[e.source, e.problem] for e in dataset.errors],
                    "properties": list(dataset.properties),
                }
            )
        ),
    }
    for i, values in enumerate(dataset.properties.values()):
        arrays[f"property_{i}"] = values
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
        np.savez(handle, **arrays)
    os.replace(handle.name, path)
    logger.debug("cached %s (%d structures) at %s", dataset.name, len(dataset), path)
    return path


def load_cached(key: str) -> CrystalDataset | None:
    """The dataset cached under ``key``, or ``None`` (also for a corrupt entry, which is removed)."""
    path = _entry(key)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(str(archive["meta"]))
            lattices, num_atoms = archive["lattices"], archive["num_atoms"]
            frac, numbers = archive["frac_coords"], archive["numbers"]
            properties = {name: archive[f"property_{i}"] for i, name in enumerate(meta["properties"])}
    except (OSError, ValueError, KeyError) as exc:
        logger.warning("ignoring unreadable dataset cache entry %s (%s)", path, exc)
        path.unlink(missing_ok=True)
        return None
    starts = np.concatenate([[0], np.cumsum(num_atoms)])
    crystals = [
        Crystal(lattices[i], frac[starts[i] : starts[i + 1]], numbers[starts[i] : starts[i + 1]])
        for i in range(len(num_atoms))
    ]
    return CrystalDataset(
        name=meta["name"],
        crystals=crystals,
        ids=meta["ids"],
        sources=meta["sources"],
        properties=properties,
        errors=[RowError(s, p) for s, p in meta["errors"]],
        content_hash=key,
    )
