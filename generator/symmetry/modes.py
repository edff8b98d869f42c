"""Modal voting: the structure most of a composition's template votes agree on, not the single nearest vote.

The template prior (:mod:`~crystaloop.generator.symmetry.prior`) ranks *templates* (space group +
Wyckoff assignment) by a kernel density over the training crystals that can host a composition,
and the generator copies the free parameters of the nearest voter. Two facts make that a weak
k=1 guess where many voters are equally near (carbon_24: every same-size crystal is a voter at
distance 0; perov_5: thousands of ABX₃ voters): many templates describe nearly one structure
(the same net in another setting or a subgroup), and one template's voters may hold quite
different free parameters. Modal voting ranks *structures* instead:

1. take the voters of the ``templates`` most probable templates, the nearest ``voters`` of them
   by descriptor distance ``D``, and build each voter's crystal for the query composition;
2. describe each by :func:`structure_fingerprint` (per element, the sorted distances from its
   sites to their ``NEIGHBOURS`` nearest neighbours, in units of (V/N)^(1/3): invariant to
   rotation, translation, site order and cell choice, and unchanged by isotropic scaling);
3. group them greedily, nearest voter first: a crystal joins the first group whose founder's
   fingerprint lies within ``radius`` (mean absolute difference), else founds a group;
4. rank groups by their mass, the sum of their voters' kernel weights ``exp(-D / (2 h²))`` (the
   prior's bandwidth ``h``), and answer each sample with a group's founder (its nearest voter).

The ``k`` samples are the founders of the ``k`` heaviest groups: ``k`` different structures, most
supported first. Every founder is one of the template prior's proposals filled from one of its
own voters, so the symmetry and the per-element counts are those of the plain generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from crystaloop.data.crystal import Crystal
from crystaloop.data.errors import CrystaloopError

__all__ = ["NEIGHBOURS", "ModalVoting", "structure_fingerprint", "fingerprint_distance", "VoteGroup", "group_votes"]

NEIGHBOURS = 8
"""Neighbour distances per site in :func:`structure_fingerprint`."""


@dataclass(frozen=True)
class ModalVoting:
    """Settings of modal voting (see the module docstring).

    Attributes:
        templates: most probable templates whose voters are considered.
        voters: nearest votes (by descriptor distance) among them that are built and grouped.
        radius: fingerprint distance (mean absolute, units of (V/N)^(1/3)) within which two votes are one structure.
    """

    templates: int = 40
    voters: int = 200
    radius: float = 0.05

    def __post_init__(self) -> None:
        if self.templates < 1 or self.voters < 1 or not self.radius >= 0:
            raise CrystaloopError(f"modal voting needs templates ≥ 1, voters ≥ 1 and radius ≥ 0, got {self}")


def structure_fingerprint(crystal: Crystal, neighbours: int = NEIGHBOURS) -> np.ndarray:
    """(n_sites × neighbours,) float64: per element (ascending atomic number), the sorted
    distances from its sites to their ``neighbours`` nearest sites (any element, periodic
    images included), divided by (V/N)^(1/3).

    Two crystals of one composition and cell size have fingerprints of equal length; the same
    crystal rotated, translated, with its sites permuted or its cell re-chosen gives the same
    fingerprint to floating-point precision.

    Raises:
        CrystaloopError: ``neighbours < 1``.
    """
    if neighbours < 1:
        raise CrystaloopError(f"neighbours must be ≥ 1, got {neighbours}")
    structure = crystal.to_pymatgen()
    scale = (crystal.volume / crystal.n_sites) ** (1.0 / 3.0)
    radius = 2.0 * scale
    while True:
        centres, _, _, distances = structure.get_neighbor_list(radius, exclude_self=True)
        counts = np.bincount(centres, minlength=crystal.n_sites)
        if counts.min() >= neighbours:
            break
        radius *= 1.5
    order = np.lexsort((distances, centres))
    centres, distances = centres[order], distances[order]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    nearest = np.stack([distances[s:s + neighbours] for s in starts]) / scale  # (n_sites, neighbours)
    parts = [np.sort(nearest[crystal.numbers == z].ravel()) for z in np.unique(crystal.numbers)]
    return np.concatenate(parts)


def fingerprint_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two fingerprints (inf when their lengths differ: another cell size)."""
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a - b).mean())


@dataclass(frozen=True)
class VoteGroup:
    """Votes whose crystals share one structure.

    Attributes:
        members: indices into the votes given to :func:`group_votes`, founder (nearest) first.
        mass: the members' summed kernel weight.
    """

    members: tuple[int, ...]
    mass: float

    @property
    def founder(self) -> int:
        return self.members[0]


def group_votes(fingerprints: Sequence[np.ndarray], weights: Sequence[float], radius: float) -> list[VoteGroup]:
    """Greedy groups of ``fingerprints`` (given nearest vote first), heaviest group first.

    Args:
        fingerprints: one per vote, in the order the votes are trusted (founders are taken in this order).
        weights: kernel weight per vote (≥ 0).
        radius: a vote joins the first group whose founder is within this fingerprint distance.

    Raises:
        CrystaloopError: lengths differ, a negative weight or radius.
    """
    if len(fingerprints) != len(weights):
        raise CrystaloopError(f"{len(fingerprints)} fingerprints but {len(weights)} weights")
    if radius < 0 or any(w < 0 for w in weights):
        raise CrystaloopError(f"radius and weights must be ≥ 0, got radius {radius}")
    founders: list[int] = []
    members: list[list[int]] = []
    for i, fp in enumerate(fingerprints):
        for g, founder in enumerate(founders):
            if fingerprint_distance(fp, fingerprints[founder]) <= radius:
                members[g].append(i)
                break
        else:
            founders.append(i)
            members.append([i])
    groups = [VoteGroup(tuple(m), float(sum(weights[i] for i in m))) for m in members]
    order = sorted(range(len(groups)), key=lambda g: (-groups[g].mass, groups[g].founder))
    return [groups[g] for g in order]
