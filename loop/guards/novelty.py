"""Known structures and tolerant matching: is a candidate new, or a copy of something known?

:class:`StructureIndex` holds known crystals (a generator's training split, the campaign's kept
candidates) grouped by reduced formula. :meth:`StructureIndex.match` answers in two stages:

1. **canonical hash** (exact, cheap): the candidate's hash equals a known crystal's;
2. **StructureMatcher** (pymatgen; :mod:`crystaloop.data.matching`'s ``"same_structure"``
   preset, today the CSP protocol's ``stol=0.5, ltol=0.3, angle_tol=10``, primitive cells and
   volume scaling on, pymatgen's defaults): a match is
   ``get_rms_dist`` returning a value, the criterion of DESIGN.md's CSP protocol. Rotated,
   translated, permuted, re-based and supercell copies all match.

Only crystals of the candidate's reduced formula are compared, so a perov_5 candidate meets at
most a handful. Where a formula has many known crystals (carbon_24: every crystal is C), only the
``max_comparisons`` nearest by :func:`neighbour_profile` go to StructureMatcher: a supercell-,
scale- and rotation-invariant radial profile, so a copy of a known crystal has distance 0 to it
and is always among the nearest. For large groups this is a pre-filter, not a proof: a loose
match (stol 0.5) with a distorted profile can rank beyond ``max_comparisons`` and be missed.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from crystaloop.data.crystal import Crystal
from crystaloop.data.matching import SAME_STRUCTURE, structure_matcher

__all__ = ["StructureMatch", "StructureIndex", "Matcher", "neighbour_profile", "neighbour_profiles", "PROFILE_BINS"]

logger = logging.getLogger(__name__)

PROFILE_BINS = 24
_PROFILE_MAX = 2.0  # profile range in units of (V/N)^(1/3)
_CENTRES = np.linspace(0.0, _PROFILE_MAX, PROFILE_BINS)
_WIDTH = _CENTRES[1] - _CENTRES[0]


def neighbour_profiles(crystals: Sequence[Crystal]) -> np.ndarray:
    """(n, PROFILE_BINS) radial neighbour profiles, one row per crystal.

    Each cell is first scaled to one Å³ per site (distances in units of (V/N)^(1/3)); every
    periodic neighbour of every site within 2 of those units adds a Gaussian bump (width one bin)
    at its distance, and the sum is divided by the number of sites. The result is invariant to
    rotation, translation, site order, choice of basis, supercells and isotropic scaling.
    """
    import torch

    from crystaloop.data.graphs import radius_graph_pbc

    out = np.zeros((len(crystals), PROFILE_BINS))
    if not crystals:
        return out
    scales = np.array([(c.volume / c.n_sites) ** (1.0 / 3.0) for c in crystals])
    lattice = torch.from_numpy(np.stack([c.lattice / s for c, s in zip(crystals, scales, strict=True)]))
    frac = torch.from_numpy(np.concatenate([c.frac_coords for c in crystals]))
    counts = torch.tensor([c.n_sites for c in crystals])
    index, _, vectors = radius_graph_pbc(lattice, frac, counts, _PROFILE_MAX + 2 * _WIDTH)
    owner = np.repeat(np.arange(len(crystals)), counts.numpy())[index[1].numpy()]
    lengths = vectors.norm(dim=-1).numpy()
    bumps = np.exp(-0.5 * ((lengths[:, None] - _CENTRES[None, :]) / _WIDTH) ** 2)
    np.add.at(out, owner, bumps)
    return out / counts.numpy()[:, None]


def neighbour_profile(crystal: Crystal) -> np.ndarray:
    """(PROFILE_BINS,) profile of one crystal; see :func:`neighbour_profiles`."""
    return neighbour_profiles([crystal])[0]


@dataclass(frozen=True)
class StructureMatch:
    """A known crystal a candidate matched.

    Attributes:
        label: the known crystal's id (``perov_5/train:<material_id>``, or a candidate id).
        how: ``hash`` (identical canonical hash) or ``matcher`` (StructureMatcher).
        rms: StructureMatcher's normalised rms displacement (``None`` for ``hash``).
    """

    label: str
    how: str
    rms: float | None = None

    def describe(self) -> str:
        if self.how == "hash":
            return f"identical canonical hash to {self.label}"
        return f"matches {self.label} (StructureMatcher rms {self.rms:.3g})"


@dataclass
class _Entry:
    label: str
    crystal: Crystal
    hash: str | None = None
    _structure: object = None

    def canonical_hash(self) -> str:
        if self.hash is None:
            self.hash = self.crystal.canonical_hash()
        return self.hash

    def structure(self):  # noqa: ANN201 - a pymatgen Structure
        if self._structure is None:
            self._structure = self.crystal.to_pymatgen()
        return self._structure


@dataclass
class _Group:
    entries: list[_Entry] = field(default_factory=list)
    profiles: np.ndarray | None = None  # (len(entries), PROFILE_BINS), filled on demand

    def nearest(self, crystal: Crystal, k: int) -> list[_Entry]:
        if len(self.entries) <= k:
            return list(self.entries)
        if self.profiles is None or len(self.profiles) < len(self.entries):
            done = 0 if self.profiles is None else len(self.profiles)
            more = neighbour_profiles([e.crystal for e in self.entries[done:]])
            self.profiles = more if self.profiles is None else np.vstack([self.profiles, more])
        distance = np.abs(self.profiles - neighbour_profile(crystal)[None, :]).sum(axis=1)
        return [self.entries[i] for i in np.argsort(distance, kind="stable")[:k]]


class Matcher:
    """Tolerant comparison of two crystals with the project's StructureMatcher
    (:func:`crystaloop.data.matching.structure_matcher`, built on first use).

    Args:
        stol, ltol, angle_tol: StructureMatcher tolerances (site, lattice length fraction,
            degrees); default the ``"same_structure"`` preset (the CSP protocol's numbers).
        max_comparisons: StructureMatcher calls per query at most (nearest by profile first).
    """

    def __init__(self, *, stol: float = SAME_STRUCTURE.stol, ltol: float = SAME_STRUCTURE.ltol,
                 angle_tol: float = SAME_STRUCTURE.angle_tol, max_comparisons: int = 24) -> None:
        self.settings = {"stol": stol, "ltol": ltol, "angle_tol": angle_tol}
        self.max_comparisons = max_comparisons
        self._matcher = None

    def rms(self, structure, other) -> float | None:  # noqa: ANN001 - pymatgen Structures
        """Normalised rms displacement when the two match (``get_rms_dist`` returns a value), else ``None``."""
        if self._matcher is None:
            self._matcher = structure_matcher("same_structure", **self.settings)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                result = self._matcher.get_rms_dist(structure, other)
            except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:  # degenerate cells
                logger.debug("StructureMatcher failed (%s); counted as no match", exc)
                return None
        return None if result is None else float(result[0])


class StructureIndex:
    """Known crystals by reduced formula; :meth:`match` finds a candidate's copy among them."""

    def __init__(self) -> None:
        self._groups: dict[str, _Group] = {}
        self._hashes: dict[str, str] = {}  # canonical hashes given with add → label
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, crystal: Crystal, label: str, *, canonical_hash: str | None = None) -> None:
        """Know ``crystal`` under ``label``; pass ``canonical_hash`` when known (a candidate id)."""
        entry = _Entry(label, crystal, canonical_hash)
        self._groups.setdefault(crystal.reduced_formula, _Group()).entries.append(entry)
        if canonical_hash is not None:
            self._hashes.setdefault(canonical_hash, label)
        self._size += 1

    def extend(self, crystals: Iterable[Crystal], labels: Iterable[str]) -> None:
        """Know several crystals (their hashes computed lazily, when first compared)."""
        for crystal, label in zip(crystals, labels, strict=True):
            self.add(crystal, label)

    @classmethod
    def from_datasets(cls, specs: Sequence[str]) -> StructureIndex:
        """Every crystal of the datasets (``perov_5/train``), labelled ``<spec>:<id>``."""
        from crystaloop.data.datasets import load_dataset

        index = cls()
        for spec in specs:
            dataset = load_dataset(spec)
            index.extend(dataset.crystals, (f"{spec}:{i}" for i in dataset.ids))
            logger.info("structure index: %d crystals of %s", len(dataset), spec)
        return index

    def match(self, crystal: Crystal, canonical_hash: str | None = None, *, matcher: Matcher | None = None) -> StructureMatch | None:
        """The known crystal ``crystal`` copies, or ``None``: canonical hash first, then (with a
        ``matcher``) StructureMatcher against the nearest known crystals of the same formula."""
        canonical_hash = canonical_hash or crystal.canonical_hash()
        if canonical_hash in self._hashes:
            return StructureMatch(self._hashes[canonical_hash], "hash")
        group = self._groups.get(crystal.reduced_formula)
        if group is None:
            return None
        nearest = group.nearest(crystal, matcher.max_comparisons if matcher is not None else len(group.entries))
        for entry in nearest:
            if entry.canonical_hash() == canonical_hash:
                return StructureMatch(entry.label, "hash")
        if matcher is None:
            return None
        structure = crystal.to_pymatgen()
        for entry in nearest:
            rms = matcher.rms(structure, entry.structure())
            if rms is not None:
                return StructureMatch(entry.label, "matcher", rms)
        return None
