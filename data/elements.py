"""Per-element descriptors shared by every model that embeds atoms.

Learned per-element embeddings see rare elements a handful of times (perov_5 has 56 elements in
3k structures); physical descriptors let a model generalise across the periodic table, as CGCNN's
atom features do (Xie & Grossman, PRL 120, 145301, 2018). The table is computed from pymatgen's
element data at first use (never at import), standardised column by column, with missing values
(e.g. noble-gas electronegativity) filled by the column's median and flagged in an extra column.
"""

from __future__ import annotations

import math
import warnings
from functools import cache

import numpy as np

from crystaloop.data.crystal import MAX_ATOMIC_NUMBER

__all__ = ["ELEMENT_DESCRIPTORS", "element_feature_table", "n_element_features"]

# name of each descriptor (pymatgen Element attribute) and its units, in column order
ELEMENT_DESCRIPTORS: tuple[tuple[str, str], ...] = (
    ("Z", ""),
    ("row", ""),
    ("group", ""),
    ("X", "Pauling"),
    ("atomic_radius", "Å"),
    ("mendeleev_no", ""),
    ("atomic_mass", "amu"),
    ("ionization_energy", "eV"),
    ("electron_affinity", "eV"),
    ("molar_volume", "cm³/mol"),
)
_BLOCKS = ("s", "p", "d", "f")


def n_element_features() -> int:
    """Width of :func:`element_feature_table`'s rows."""
    return len(ELEMENT_DESCRIPTORS) + 1 + len(_BLOCKS)


@cache
def element_feature_table() -> np.ndarray:
    """(119, F) float32 descriptors; row ``Z`` describes element ``Z`` (row 0 is all zeros).

    Columns: the standardised :data:`ELEMENT_DESCRIPTORS`, a missing-value flag, and a one-hot
    s/p/d/f block.
    """
    from pymatgen.core.periodic_table import Element

    raw = np.full((MAX_ATOMIC_NUMBER + 1, len(ELEMENT_DESCRIPTORS)), np.nan)
    blocks = np.zeros((MAX_ATOMIC_NUMBER + 1, len(_BLOCKS)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns about missing data for heavy elements
        for z in range(1, MAX_ATOMIC_NUMBER + 1):
            element = Element.from_Z(z)
            for column, (name, _) in enumerate(ELEMENT_DESCRIPTORS):
                try:
                    value = getattr(element, name)
                    raw[z, column] = float(value) if value is not None else math.nan
                except (AttributeError, TypeError, ValueError, KeyError):
                    raw[z, column] = math.nan
            try:
                blocks[z, _BLOCKS.index(element.block)] = 1.0
            except (ValueError, AttributeError, KeyError):
                pass
    missing = np.isnan(raw[1:]).any(axis=1).astype(np.float64)
    body = raw[1:]
    medians = np.nanmedian(body, axis=0)
    body = np.where(np.isnan(body), medians, body)
    body = (body - body.mean(axis=0)) / np.where(body.std(axis=0) > 0, body.std(axis=0), 1.0)
    table = np.zeros((MAX_ATOMIC_NUMBER + 1, n_element_features()), dtype=np.float32)
    table[1:, : len(ELEMENT_DESCRIPTORS)] = body
    table[1:, len(ELEMENT_DESCRIPTORS)] = missing
    table[1:, len(ELEMENT_DESCRIPTORS) + 1 :] = blocks[1:]
    table.setflags(write=False)
    return table
