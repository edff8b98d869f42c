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
from collections.abc import Sequence
from functools import cache

import numpy as np

from crystaloop.data.crystal import MAX_ATOMIC_NUMBER, Crystal, atomic_number

__all__ = ["ELEMENT_DESCRIPTORS", "element_feature_table", "n_element_features", "element_descriptor", "N_DESCRIPTORS", "composition_descriptor", "composition_descriptors", "COMPOSITION_DIM", "element_presence"]

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


# ---------------------------------------------------------------------------- chemistry descriptors
_ROLE_COLUMNS = ("row", "group", "X", "atomic_radius")
N_DESCRIPTORS = len(_ROLE_COLUMNS) + 2
_STATISTICS = ("mean", "std", "min", "max")
COMPOSITION_DIM = len(_STATISTICS) * N_DESCRIPTORS


@cache
def _oxidation_table() -> np.ndarray:
    """(119, 2) standardised (highest, lowest) common oxidation state; 0 where pymatgen lists none."""
    from pymatgen.core.periodic_table import Element

    raw = np.zeros((119, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for z in range(1, 104):
            states = Element.from_Z(z).common_oxidation_states or (0,)
            raw[z] = max(states), min(states)
    body = raw[1:104]
    raw[1:104] = (body - body.mean(axis=0)) / body.std(axis=0)
    return raw


@cache
def element_descriptor(symbol: str) -> np.ndarray:
    """(N_DESCRIPTORS = 6,) float64 chemical role of ``symbol``: period, group, Pauling
    electronegativity, atomic radius (the standardised columns of :func:`element_feature_table`)
    and the highest and lowest common oxidation states (pymatgen's, standardised over Z = 1..103).
    Two elements that play the same role in a crystal (Sr and Ba on a perovskite A site) sit
    close. Raises on an unknown symbol."""
    z = atomic_number(symbol)
    names = [name for name, _ in ELEMENT_DESCRIPTORS]
    columns = [names.index(name) for name in _ROLE_COLUMNS]
    row = np.concatenate([element_feature_table()[z, columns].astype(np.float64), _oxidation_table()[z]])
    row.setflags(write=False)
    return row


def composition_descriptor(crystal: Crystal) -> np.ndarray:
    """(COMPOSITION_DIM = 24,) float64: the mean, std, min and max over the cell's sites of each
    :func:`element_descriptor` column (a Magpie-style composition vector, Ward et al., npj
    Comput. Mater. 2, 16028, 2016, on six role descriptors). Unlike atomic fractions, two
    compositions of chemically similar elements (SrTiO3, BaZrO3) sit close, so a model fitted
    on a few labels generalises to elements it has not measured."""
    sites = np.array([element_descriptor(el) for el, n in crystal.composition.items() for _ in range(n)])
    return np.concatenate([sites.mean(axis=0), sites.std(axis=0), sites.min(axis=0), sites.max(axis=0)])


def composition_descriptors(crystals: Sequence[Crystal]) -> np.ndarray:
    """(n, COMPOSITION_DIM) :func:`composition_descriptor` rows, one per crystal."""
    if not crystals:
        return np.zeros((0, COMPOSITION_DIM))
    return np.stack([composition_descriptor(c) for c in crystals])


def element_presence(crystals: Sequence[Crystal]) -> np.ndarray:
    """(n, MAX_ATOMIC_NUMBER + 1) float64: 1 at column Z where element Z is in the cell, else 0
    (column 0 unused). The inputs of a per-element term: a model linear in these columns learns
    one offset per element, shared by every composition that holds it."""
    out = np.zeros((len(crystals), MAX_ATOMIC_NUMBER + 1))
    for i, crystal in enumerate(crystals):
        out[i, np.unique(crystal.numbers)] = 1.0
    return out
