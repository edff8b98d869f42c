"""A fixed per-element descriptor for template matching, and per-element volumes fitted on a split.

:func:`~crystaloop.data.elements.element_descriptor` (6 numbers per element, defined in
:mod:`crystaloop.data.elements` and re-exported here): period, group, Pauling electronegativity,
atomic radius and the highest and lowest common oxidation states. Two elements that play the
same role in a crystal (Sr and Ba on a perovskite A site) sit close.

:class:`VolumeModel`: the cell volume (Å³) as a sum of per-element volumes, least squares on a
training split; an element the split never saw gets ``c · r³`` with ``c`` the median ratio of
fitted volume to cubed atomic radius.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from crystaloop.data.crystal import Crystal, atomic_number
from crystaloop.data.elements import N_DESCRIPTORS, element_descriptor
from crystaloop.data.errors import CrystaloopError

__all__ = ["element_descriptor", "VolumeModel", "N_DESCRIPTORS"]


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
