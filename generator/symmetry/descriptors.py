"""A fixed per-element descriptor for template matching, and per-element volumes fitted on a split.

:func:`element_descriptor` (6 numbers per element): period, group, Pauling electronegativity,
atomic radius (the standardised columns of :func:`crystaloop.data.elements.element_feature_table`)
and the highest and lowest common oxidation states (pymatgen's, standardised over Z = 1..103).
Two elements that play the same role in a crystal (Sr and Ba on a perovskite A site) sit close.

:class:`VolumeModel`: the cell volume (Å³) as a sum of per-element volumes, least squares on a
training split; an element the split never saw gets ``c · r³`` with ``c`` the median ratio of
fitted volume to cubed atomic radius.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from functools import cache

import numpy as np

from crystaloop.data.crystal import Crystal, atomic_number
from crystaloop.data.elements import ELEMENT_DESCRIPTORS, element_feature_table
from crystaloop.data.errors import CrystaloopError

__all__ = ["element_descriptor", "VolumeModel", "N_DESCRIPTORS"]

_TABLE_COLUMNS = ("row", "group", "X", "atomic_radius")
N_DESCRIPTORS = len(_TABLE_COLUMNS) + 2


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
    """(6,) float64 descriptor of ``symbol`` (see the module docstring); raises on an unknown symbol."""
    z = atomic_number(symbol)
    names = [name for name, _ in ELEMENT_DESCRIPTORS]
    columns = [names.index(name) for name in _TABLE_COLUMNS]
    row = np.concatenate([element_feature_table()[z, columns].astype(np.float64), _oxidation_table()[z]])
    row.setflags(write=False)
    return row


def _atomic_radius(symbol: str) -> float:
    from pymatgen.core.periodic_table import Element

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        radius = Element(symbol).atomic_radius
    return float(radius) if radius is not None else 1.5


class VolumeModel:
    """Cell volume (Å³) = Σ count × per-element volume, fitted on ``crystals``.

    Raises:
        CrystaloopError: no crystals to fit on.
    """

    def __init__(self, crystals: Sequence[Crystal]) -> None:
        if not crystals:
            raise CrystaloopError("a volume model needs at least one training crystal")
        elements = sorted({el for c in crystals for el in c.composition}, key=atomic_number)
        index = {el: i for i, el in enumerate(elements)}
        design = np.zeros((len(crystals), len(elements)))
        for row, crystal in enumerate(crystals):
            for el, n in crystal.composition.items():
                design[row, index[el]] = n
        volumes = np.array([c.volume for c in crystals])
        fitted, *_ = np.linalg.lstsq(design, volumes, rcond=None)
        fitted = np.clip(fitted, 1.0, None)
        self.per_element: dict[str, float] = {el: float(v) for el, v in zip(elements, fitted, strict=True)}
        ratios = [v / _atomic_radius(el) ** 3 for el, v in self.per_element.items()]
        self.radius_factor = float(np.median(ratios))

    def element_volume(self, symbol: str) -> float:
        """Volume (Å³) one atom of ``symbol`` takes."""
        if symbol in self.per_element:
            return self.per_element[symbol]
        atomic_number(symbol)
        return self.radius_factor * _atomic_radius(symbol) ** 3

    def volume(self, composition: Mapping[str, int]) -> float:
        """Estimated cell volume (Å³) of a cell with this composition."""
        total = sum(n * self.element_volume(el) for el, n in composition.items())
        if not math.isfinite(total) or total <= 0:
            raise CrystaloopError(f"no volume estimate for {dict(composition)}")
        return total
