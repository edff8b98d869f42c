"""`CrystalDataset` and `RowError`: what every dataset reader returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets.cards import known_property_units

__all__ = ["CrystalDataset", "RowError", "PROPERTY_UNITS", "property_unit"]

PROPERTY_UNITS: dict[str, str] = known_property_units()
"""Units of the property columns of the carded datasets (:mod:`.cards`), by column name."""


def property_unit(column: str) -> str:
    """The unit of a property column: from the dataset cards, ``""`` for a column of a user's
    own data that no card describes (its unit is unknown, not dimensionless)."""
    return PROPERTY_UNITS[column] if column in PROPERTY_UNITS else ""


@dataclass(frozen=True)
class RowError:
    """One input row or file that could not be read, and why."""

    source: str
    problem: str

    def __str__(self) -> str:
        return f"{self.source}: {self.problem}"


@dataclass
class CrystalDataset:
    """Crystals read from one source, with their ids, numeric properties and the rows that failed.

    Attributes:
        name: dataset name (``"perov_5/train"``) or the path it was read from.
        crystals: the structures that were read.
        ids: one identifier per crystal (``material_id`` where the source has one).
        sources: where each crystal came from (``"val.csv row 12"``, a file name).
        properties: column name → (n,) float64 array, NaN where a value is missing.
        errors: rows or files that could not be read, each with its reason.
        content_hash: sha256 of the input bytes and reader settings (the cache key).
    """

    name: str
    crystals: list[Crystal]
    ids: list[str]
    sources: list[str]
    properties: dict[str, np.ndarray] = field(default_factory=dict)
    errors: list[RowError] = field(default_factory=list)
    content_hash: str = ""

    def __post_init__(self) -> None:
        n = len(self.crystals)
        if len(self.ids) != n or len(self.sources) != n:
            raise ValueError(f"{self.name}: {n} crystals need {n} ids and sources, got {len(self.ids)} and {len(self.sources)}")
        for key, values in self.properties.items():
            if values.shape != (n,):
                raise ValueError(f"{self.name}: property {key!r} has shape {values.shape}, expected ({n},)")

    def __len__(self) -> int:
        return len(self.crystals)

    @property
    def units(self) -> dict[str, str]:
        """Property name → units (empty string where unknown)."""
        return {key: property_unit(key) for key in self.properties}

    def subset(self, indices: Sequence[int] | np.ndarray, name: str | None = None) -> CrystalDataset:
        """The crystals at ``indices`` (errors are not carried over)."""
        idx = np.asarray(indices, dtype=np.int64)
        return CrystalDataset(
            name=name or self.name,
            crystals=[self.crystals[i] for i in idx],
            ids=[self.ids[i] for i in idx],
            sources=[self.sources[i] for i in idx],
            properties={k: v[idx] for k, v in self.properties.items()},
            content_hash=self.content_hash,
        )

    def summary(self) -> dict[str, object]:
        """Counts and ranges for ``crystaloop data info``."""
        n_sites = np.array([c.n_sites for c in self.crystals]) if self.crystals else np.zeros(0)
        elements = sorted({e for c in self.crystals for e in c.elements})
        return {
            "name": self.name,
            "structures": len(self),
            "bad_rows": len(self.errors),
            "sites_min": int(n_sites.min()) if n_sites.size else 0,
            "sites_max": int(n_sites.max()) if n_sites.size else 0,
            "sites_mean": float(n_sites.mean()) if n_sites.size else 0.0,
            "elements": elements,
            "properties": {
                k: {
                    "units": property_unit(k),
                    "count": int(np.isfinite(v).sum()),
                    "mean": float(np.nanmean(v)) if np.isfinite(v).any() else float("nan"),
                    "min": float(np.nanmin(v)) if np.isfinite(v).any() else float("nan"),
                    "max": float(np.nanmax(v)) if np.isfinite(v).any() else float("nan"),
                }
                for k, v in self.properties.items()
            },
        }
