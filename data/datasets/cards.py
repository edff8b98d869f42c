"""Dataset cards: one place for what crystaloop knows about each benchmark dataset.

A :class:`DatasetCard` holds a dataset's published split sizes, atoms per cell, property
columns with their units, the properties the generator presets condition on, the de novo
coverage cutoffs of its evaluation protocol and the splits shipped in the package. Look one up
with :func:`dataset_card` (an unknown name raises
:class:`~crystaloop.data.errors.UnknownComponentError` listing the known ones) or, for a
dataset spec that may also be a path, :func:`card_for_spec`.

Sources: split sizes as published with CDVAE (Xie et al., ICLR 2022; github.com/txie-93/cdvae,
60/20/20 splits) and recorded in ``shared/data/README.md``; coverage cutoffs from CDVAE's
evaluation (``COV_Cutoffs``: perov_5 and carbon_24 structure 0.2 / composition 4, MP-20
0.4 / 10). MP-20 is not shipped; its card describes the CDVAE/DiffCSP layout a user may have.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from crystaloop.data.errors import UnknownComponentError

__all__ = ["CoverageCutoffs", "DatasetCard", "DATASET_CARDS", "dataset_card", "card_for_spec", "known_property_units"]


@dataclass(frozen=True)
class CoverageCutoffs:
    """COV-R / COV-P thresholds: a generated and a reference crystal are close when their
    CrystalNN structure-fingerprint distance is at most ``structure`` and their standardised
    Magpie composition-fingerprint distance at most ``composition`` (both dimensionless)."""

    structure: float
    composition: float


@dataclass(frozen=True)
class DatasetCard:
    """What crystaloop knows about one dataset.

    Attributes:
        name: the name used in dataset specs (``"perov_5"`` in ``"perov_5/train"``).
        description: one line on what the structures are.
        split_sizes: published split → number of structures.
        atoms_per_cell: (fewest, most) sites per cell.
        n_elements: distinct elements over the whole dataset.
        properties: property column → unit (the CSV columns that are numeric properties).
        conditioning: the properties the generator presets condition on (a subset of ``properties``).
        coverage: the evaluation protocol's coverage cutoffs.
        shipped_splits: splits shipped in ``data/shipped/<name>/`` (empty when none are).
        source: where the data comes from.
    """

    name: str
    description: str
    split_sizes: Mapping[str, int]
    atoms_per_cell: tuple[int, int]
    n_elements: int
    properties: Mapping[str, str]
    conditioning: tuple[str, ...]
    coverage: CoverageCutoffs
    shipped_splits: tuple[str, ...]
    source: str

    @property
    def size(self) -> int:
        """Structures over all published splits."""
        return sum(self.split_sizes.values())

    def unit(self, prop: str) -> str:
        """The unit of property column ``prop``.

        Raises:
            UnknownComponentError: ``prop`` is not one of this dataset's properties.
        """
        if prop not in self.properties:
            raise UnknownComponentError(f"property of {self.name}", prop, self.properties)
        return self.properties[prop]


_CARDS = (
    DatasetCard(
        name="perov_5",
        description="ABX3 perovskite-derived cells, 5 atoms each",
        split_sizes=MappingProxyType({"train": 11356, "val": 3787, "test": 3785}),
        atoms_per_cell=(5, 5),
        n_elements=56,
        # heats of formation in the CMR database's two conventions, band gaps
        properties=MappingProxyType({"heat_all": "eV", "heat_ref": "eV", "dir_gap": "eV", "ind_gap": "eV"}),
        conditioning=("heat_ref", "dir_gap"),
        coverage=CoverageCutoffs(structure=0.2, composition=4.0),
        shipped_splits=("train", "val"),
        source="CMR perovskites (Castelli et al. 2012), CDVAE splits",
    ),
    DatasetCard(
        name="carbon_24",
        description="carbon polymorphs from AIRSS at 10 GPa, 6-24 atoms",
        split_sizes=MappingProxyType({"train": 6091, "val": 2032, "test": 2030}),
        atoms_per_cell=(6, 24),
        n_elements=1,
        # absolute DFT energy per atom, not a formation energy
        properties=MappingProxyType({"energy_per_atom": "eV/atom"}),
        conditioning=("energy_per_atom",),
        coverage=CoverageCutoffs(structure=0.2, composition=4.0),
        shipped_splits=("train", "val"),
        source="Pickard, Materials Cloud 2020.0026, CDVAE splits",
    ),
    DatasetCard(
        name="mp_20",
        description="Materials Project structures with at most 20 atoms",
        split_sizes=MappingProxyType({"train": 27136, "val": 9047, "test": 9046}),
        atoms_per_cell=(1, 20),
        n_elements=89,
        properties=MappingProxyType(
            {"formation_energy_per_atom": "eV/atom", "e_above_hull": "eV/atom", "band_gap": "eV"}
        ),
        conditioning=("formation_energy_per_atom",),
        coverage=CoverageCutoffs(structure=0.4, composition=10.0),
        shipped_splits=(),
        source="Materials Project (Jain et al. 2013), CDVAE splits; not shipped",
    ),
)

DATASET_CARDS: Mapping[str, DatasetCard] = MappingProxyType({card.name: card for card in _CARDS})
"""Dataset name → card."""

def dataset_card(name: str) -> DatasetCard:
    """The card of dataset ``name`` (``"perov_5"``; a spec such as ``"perov_5/val"`` works too).

    Raises:
        UnknownComponentError: no card has that name (the message lists the known ones).
    """
    base = name.split("/")[0]
    if base not in DATASET_CARDS:
        raise UnknownComponentError("dataset", base, DATASET_CARDS)
    return DATASET_CARDS[base]


def card_for_spec(spec: str | Path) -> DatasetCard | None:
    """The card a dataset spec refers to, or ``None`` for a user's own file or folder.

    ``"name"`` or ``"name/split"`` of a carded dataset gives its card; an existing path that is
    not such a spec gives ``None`` (the caller decides what uncarded data means); anything
    else is a typo and raises.

    Raises:
        UnknownComponentError: ``spec`` is neither a carded dataset nor an existing path.
    """
    text = str(spec)
    base = text.split("/")[0]
    if base in DATASET_CARDS:
        return DATASET_CARDS[base]
    if text and Path(text).exists():
        return None
    raise UnknownComponentError("dataset name or path", text, DATASET_CARDS)


def known_property_units() -> dict[str, str]:
    """Property column → unit over every card (a column two cards share has one unit; tested)."""
    units: dict[str, str] = {}
    for card in _CARDS:
        units.update(card.properties)
    return units
