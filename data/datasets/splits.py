"""Deterministic seeded splits of datasets and of CDVAE CSV files.

The same ``(n, fractions, seed)`` always gives the same parts on every machine (numpy's PCG64
``default_rng``). :func:`write_split_csv` splits a CSV row by row without re-formatting any field,
which is how the shipped ``perov_5`` and ``carbon_24`` development splits were made::

    crystaloop data split ../shared/data/perov_5/val.csv --out data/shipped/perov_5 --seed 0
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from crystaloop.data.datasets.readers import iter_csv_rows
from crystaloop.data.errors import DatasetError

__all__ = ["split_indices", "parse_fractions", "write_split_csv", "DEFAULT_FRACTIONS"]

DEFAULT_FRACTIONS: dict[str, float] = {"train": 0.8, "val": 0.2}


def parse_fractions(text: str) -> dict[str, float]:
    """Parse ``"train=0.8,val=0.2"`` into a dict; fractions must be positive and sum to 1."""
    fractions: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        try:
            fractions[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise DatasetError(f"bad split fraction {part!r}; expected name=fraction, e.g. 'train=0.8,val=0.2'")
    _check_fractions(fractions)
    return fractions


def _check_fractions(fractions: Mapping[str, float]) -> None:
    if not fractions:
        raise DatasetError("no split fractions given; expected e.g. {'train': 0.8, 'val': 0.2}")
    if any(not 0 < f <= 1 for f in fractions.values()) or abs(sum(fractions.values()) - 1.0) > 1e-9:
        raise DatasetError(f"split fractions {dict(fractions)} must be in (0, 1] and sum to 1")


def split_indices(n: int, fractions: Mapping[str, float] = DEFAULT_FRACTIONS, *, seed: int) -> dict[str, np.ndarray]:
    """Partition ``range(n)`` at random into named parts of the given fractions.

    Part sizes are ``round(f * n)`` with the rounding remainder going to the first part; each
    part's indices are returned sorted. Parts are disjoint and together cover ``range(n)``.
    """
    _check_fractions(fractions)
    permutation = np.random.default_rng(seed).permutation(n)
    names = list(fractions)
    sizes = [int(round(fractions[name] * n)) for name in names]
    sizes[0] += n - sum(sizes)
    parts, start = {}, 0
    for name, size in zip(names, sizes, strict=True):
        parts[name] = np.sort(permutation[start : start + size])
        start += size
    return parts


def write_split_csv(
    source: Path, out_dir: Path, fractions: Mapping[str, float] = DEFAULT_FRACTIONS, *, seed: int
) -> dict[str, Path]:
    """Split a CDVAE CSV into ``out_dir/<part>.csv.gz`` files, fields copied verbatim.

    The gzip headers carry no timestamp, so the same input and seed give byte-identical files.
    """
    try:
        rows = list(iter_csv_rows(source))
    except (OSError, csv.Error, UnicodeDecodeError, EOFError) as exc:
        raise DatasetError(f"cannot read {source} as CSV: {exc}") from None
    if not rows:
        raise DatasetError(f"{source} has no rows to split")
    columns = list(rows[0].keys())
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot create the output folder {out_dir}: {exc.strerror or exc}") from None
    written = {}
    for name, indices in split_indices(len(rows), fractions, seed=seed).items():
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows[i] for i in indices)
        target = out_dir / f"{name}.csv.gz"
        with open(target, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
            gz.write(buffer.getvalue().encode("utf-8"))
        written[name] = target
    return written
