"""`load_dataset`: one call for shipped datasets, CDVAE CSVs, structure folders and extxyz files."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from crystaloop.data.crystal import PlausibilityLimits
from crystaloop.data.datasets.base import CrystalDataset
from crystaloop.data.datasets.cache import content_hash, load_cached, save_cached
from crystaloop.data.datasets.cards import DATASET_CARDS
from crystaloop.data.datasets.files import read_structure_file
from crystaloop.data.datasets.readers import (
    STRUCTURE_FILE_PATTERNS,
    DatasetFormat,
    detect_format,
    read_cdvae_csv,
    read_extxyz,
    read_structure_folder,
)
from crystaloop.data.errors import DatasetError, UnknownComponentError

__all__ = ["SHIPPED_DATASETS", "shipped_path", "resolve_dataset_path", "load_dataset"]

logger = logging.getLogger(__name__)

_SHIPPED_ROOT = Path(__file__).resolve().parent.parent / "shipped"
# name → split files shipped in the package (see data/shipped/ATTRIBUTION.md), from the dataset cards.
SHIPPED_DATASETS: dict[str, tuple[str, ...]] = {n: c.shipped_splits for n, c in DATASET_CARDS.items() if c.shipped_splits}

_READERS: dict[str, Callable[..., CrystalDataset]] = {
    "cdvae-csv": read_cdvae_csv,
    "structure-folder": read_structure_folder,
    "extxyz": read_extxyz,
    "structure-file": read_structure_file,
}


def shipped_path(name: str, split: str) -> Path:
    """Path of a shipped split, e.g. ``shipped_path("perov_5", "train")``."""
    if name not in SHIPPED_DATASETS:
        raise UnknownComponentError("shipped dataset", name, SHIPPED_DATASETS)
    if split not in SHIPPED_DATASETS[name]:
        raise UnknownComponentError(f"split of {name}", split, SHIPPED_DATASETS[name])
    return _SHIPPED_ROOT / name / f"{split}.csv.gz"


def resolve_dataset_path(spec: str | Path) -> Path:
    """A path as given, or ``name/split`` (or ``name``, meaning its train split) of a shipped dataset."""
    path = Path(spec)
    if path.exists():
        return path
    name, _, split = str(spec).partition("/")
    if name in SHIPPED_DATASETS:
        return shipped_path(name, split or "train")
    raise DatasetError(
        f"no dataset at {spec!r}: not an existing path and not a shipped dataset; "
        f"shipped: {', '.join(f'{n}/{s}' for n, splits in SHIPPED_DATASETS.items() for s in splits)}"
    )


def _input_files(path: Path, fmt: DatasetFormat) -> list[Path]:
    if fmt == "structure-folder":
        return sorted({f for pattern in STRUCTURE_FILE_PATTERNS for f in path.glob(pattern) if f.is_file()})
    return [path]


def load_dataset(
    spec: str | Path,
    *,
    fmt: DatasetFormat | None = None,
    limits: PlausibilityLimits | None = None,
    max_rows: int | None = None,
    use_cache: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> CrystalDataset:
    """Read a dataset, from the on-disk cache when the same input was parsed before.

    Args:
        spec: a file or folder path, or a shipped dataset as ``"perov_5/train"``.
        fmt: the format; detected from the path when ``None``.
        limits: plausibility limits each structure must meet.
        max_rows: CDVAE CSV only: read at most this many rows.
        use_cache: read from and write to the cache (:mod:`.cache`).
        progress: called as ``progress(done, total)`` while parsing (not on a cache hit).
    """
    path = resolve_dataset_path(spec)
    fmt = fmt or detect_format(path)
    if fmt not in _READERS:
        raise UnknownComponentError("dataset format", fmt, _READERS)
    limits = limits or PlausibilityLimits()
    files = _input_files(path, fmt)
    if not files:
        raise DatasetError(f"{path} holds no structure files; expected {', '.join(STRUCTURE_FILE_PATTERNS)}")
    key = content_hash(files, {"format": fmt, "limits": limits.model_dump(), "max_rows": max_rows})
    if use_cache and (cached := load_cached(key)) is not None:
        logger.info("loaded %s from cache (%d structures)", path, len(cached))
        cached.name = str(spec)
        return cached
    kwargs: dict[str, object] = {"limits": limits, "progress": progress}
    if fmt == "cdvae-csv":
        kwargs["max_rows"] = max_rows
    dataset = _READERS[fmt](path, **kwargs)
    dataset.name = str(spec)
    dataset.content_hash = key
    if use_cache:
        save_cached(dataset, key)
    return dataset
