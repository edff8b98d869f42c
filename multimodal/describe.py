"""A fast text describer of crystals (a few ms each): the words the text encoder learns from.

For every structure it states the reduced formula, crystal system and space group (spglib,
``symprec`` 0.1 Å), the coordination environment of each symmetry-distinct site (neighbours
within ``1 + bond_tolerance`` times the site's shortest distance: count, neighbour elements,
mean bond length in Å and a geometry name from the bond angles), the dimensionality of the
bonded network (rank of the lattice translations closed by cycles of the bond graph, as in
Larsen et al., Phys. Rev. Materials 3, 034003, 2019) and the density in g/cm³.

:func:`describe` gives the full, deterministic description; with ``rng`` it gives a training
variant: facts dropped at random (never the formula), sentences reordered and phrasings varied,
so that the encoder learns from partial, free-form queries as users write them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from crystaloop.data.crystal import Crystal, element_symbol
from crystaloop.data.graphs import radius_graph_pbc

__all__ = ["SiteEnvironment", "CrystalFacts", "crystal_facts", "describe", "describe_many", "crystal_system"]

_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                 "eleven", "twelve")  # fmt: skip
_DIMENSION_WORDS = {
    0: "isolated clusters (zero-dimensional)",
    1: "one-dimensional chains",
    2: "two-dimensional layers",
    3: "a three-dimensional framework",
}


@dataclass(frozen=True)
class SiteEnvironment:
    """The coordination of one symmetry-distinct site: ``n`` neighbours of the given elements."""

    element: str
    coordination: int
    neighbours: tuple[tuple[str, int], ...]  # (element, count), most frequent first
    bond_length: float  # mean distance to the neighbours, Å
    geometry: str  # "octahedral", "tetrahedral", … or "" when no name fits


@dataclass(frozen=True)
class CrystalFacts:
    """Everything :func:`describe` says about a crystal, as data."""

    formula: str
    crystal_system: str
    spacegroup_symbol: str
    spacegroup_number: int
    environments: tuple[SiteEnvironment, ...]
    dimensionality: int  # 0..3
    density: float  # g/cm³
    n_sites: int


def crystal_system(spacegroup_number: int) -> str:
    """The crystal system of an international space-group number (1..230)."""
    bounds = ((2, "triclinic"), (15, "monoclinic"), (74, "orthorhombic"), (142, "tetragonal"),
              (167, "trigonal"), (194, "hexagonal"), (230, "cubic"))  # fmt: skip
    for top, name in bounds:
        if spacegroup_number <= top:
            return name
    raise ValueError(f"space-group number {spacegroup_number} is outside 1..230")


def crystal_facts(crystal: Crystal, *, symprec: float = 0.1, bond_tolerance: float = 0.2) -> CrystalFacts:
    """Formula, symmetry, site environments, dimensionality and density of ``crystal``."""
    import spglib

    cell = (crystal.lattice, crystal.frac_coords, crystal.numbers)
    dataset = spglib.get_symmetry_dataset(cell, symprec=symprec)
    if dataset is None:
        number, symbol, equivalent = 1, "P1", np.arange(crystal.n_sites)
    else:
        number, symbol = int(dataset.number), str(dataset.international)
        equivalent = np.asarray(dataset.equivalent_atoms)
    src, dst, images, vectors = _bonds(crystal, bond_tolerance)
    groups: dict[tuple[str, int, tuple[tuple[str, int], ...], str], list[float]] = {}
    for site in np.unique(equivalent):
        env = _environment(crystal, int(site), src, dst, vectors)
        groups.setdefault((env.element, env.coordination, env.neighbours, env.geometry), []).append(env.bond_length)
    environments = [  # sites alike but for their bond lengths are said once, with the mean length
        SiteEnvironment(element, cn, neighbours, round(float(np.mean(lengths)), 2), geometry)
        for (element, cn, neighbours, geometry), lengths in groups.items()
    ]
    return CrystalFacts(
        formula=crystal.reduced_formula,
        crystal_system=crystal_system(number),
        spacegroup_symbol=symbol,
        spacegroup_number=number,
        environments=tuple(sorted(environments, key=lambda e: (e.element, e.coordination))),
        dimensionality=_dimensionality(crystal.n_sites, src, dst, images),
        density=float(crystal.density),
        n_sites=crystal.n_sites,
    )


def _bonds(crystal: Crystal, tolerance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bonds (src, dst, lattice image of dst (E, 3), vector Å (E, 3)) of every site: neighbours within (1 + tolerance) × its nearest distance.

    A pair bonded from either end is bonded in both directions, so the graph is symmetric.
    """
    cutoff = 4.0
    while True:
        index, image, vec = radius_graph_pbc(
            torch.tensor(crystal.lattice)[None],
            torch.tensor(crystal.frac_coords),
            torch.tensor([crystal.n_sites]),
            cutoff,
        )
        present = np.unique(index[1].numpy()) if index.shape[1] else np.zeros(0, dtype=np.int64)
        if len(present) == crystal.n_sites or cutoff > 12.0:
            break
        cutoff *= 1.5  # some site has no neighbour yet (a sparse cell)
    src, dst, image, vec = index[0].numpy(), index[1].numpy(), image.numpy(), vec.numpy()
    length = np.linalg.norm(vec, axis=1)
    nearest = np.full(crystal.n_sites, np.inf)
    np.minimum.at(nearest, src, length)
    within = (length <= (1 + tolerance) * nearest[src] + 1e-6) | (length <= (1 + tolerance) * nearest[dst] + 1e-6)
    return src[within], dst[within], image[within], vec[within]


def _environment(crystal: Crystal, site: int, src: np.ndarray, dst: np.ndarray, vectors: np.ndarray) -> SiteEnvironment:
    mine = src == site
    bonds = vectors[mine]
    counts = Counter(element_symbol(int(crystal.numbers[j])) for j in dst[mine])
    neighbours = tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    length = float(np.linalg.norm(bonds, axis=1).mean()) if len(bonds) else float("nan")
    return SiteEnvironment(
        element=element_symbol(int(crystal.numbers[site])),
        coordination=int(mine.sum()),
        neighbours=neighbours,
        bond_length=length,
        geometry=_geometry(bonds),
    )


def _geometry(bonds: np.ndarray) -> str:
    """A polyhedron name from the bond angles (degrees), or "" where no common name fits."""
    n = len(bonds)
    if n < 2:
        return ""
    unit = bonds / np.linalg.norm(bonds, axis=1, keepdims=True)
    cosines = np.clip(unit @ unit.T, -1.0, 1.0)[np.triu_indices(n, 1)]
    angles = np.degrees(np.arccos(cosines))
    straight = int((angles > 160).sum())
    if n == 2:
        return "linear" if straight else "bent"
    if n == 3:
        return "trigonal planar" if abs(angles.sum() - 360.0) < 15.0 else "trigonal pyramidal"
    if n == 4:
        if straight >= 2:
            return "square planar"
        return "tetrahedral" if np.all((angles > 85) & (angles < 140)) else "distorted tetrahedral"
    if n == 6:
        return "octahedral" if straight == 3 else "trigonal prismatic" if straight == 0 else ""
    if n == 8 and straight == 4:
        return "cubic"
    if n == 12 and straight == 6:
        return "cuboctahedral"
    return {5: "five-fold", 7: "seven-fold", 9: "nine-fold", 10: "ten-fold", 11: "eleven-fold"}.get(n, "")


def _dimensionality(n_sites: int, src: np.ndarray, dst: np.ndarray, images: np.ndarray) -> int:
    """Largest rank of the lattice translations closed by bond-graph cycles, over connected components.

    Walks each component assigning every site the lattice image it is reached in; a bond that
    reaches an already placed site in another image closes a cycle spanning that translation.
    """
    adjacency: list[list[tuple[int, int]]] = [[] for _ in range(n_sites)]
    for k, i in enumerate(src.tolist()):
        adjacency[i].append((int(dst[k]), k))
    offset: dict[int, np.ndarray] = {}
    best = 0
    for start in range(n_sites):
        if start in offset:
            continue
        offset[start] = np.zeros(3, dtype=np.int64)
        stack, cycles = [start], []
        while stack:
            i = stack.pop()
            for j, k in adjacency[i]:
                reach = offset[i] + images[k]
                if j not in offset:
                    offset[j] = reach
                    stack.append(j)
                elif not np.array_equal(reach, offset[j]):
                    cycles.append(reach - offset[j])
        if cycles:
            best = max(best, int(np.linalg.matrix_rank(np.array(cycles, dtype=np.float64))))
    return best


def _count_word(n: int) -> str:
    return _NUMBER_WORDS[n] if 0 <= n < len(_NUMBER_WORDS) else str(n)


def _environment_sentence(env: SiteEnvironment, rng: np.random.Generator | None) -> str:
    if env.coordination == 0:
        return f"{env.element} has no close neighbours."
    parts = [f"{_count_word(n)} {element}" for element, n in env.neighbours]
    joined = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    bonds = "/".join(f"{env.element}–{element}" for element, _ in env.neighbours)
    article = "an" if env.geometry[:1] in ("a", "e", "i", "o", "u") else "a"
    shape = f" in {article} {env.geometry} geometry" if env.geometry else ""
    if rng is not None and rng.random() < 0.5:
        shape = f", {env.geometry} coordination" if env.geometry else ""
        return f"{env.element} is {env.coordination}-coordinate with {joined} neighbours at {env.bond_length:.2f} Å{shape}."
    return f"{env.element} is bonded to {joined} atoms{shape} ({bonds} {env.bond_length:.2f} Å)."


def _sentences(facts: CrystalFacts, rng: np.random.Generator | None) -> tuple[str, list[str]]:
    """(the opening sentence, the other sentences) of a description."""
    symmetry = f"the {facts.crystal_system} {facts.spacegroup_symbol} space group (No. {facts.spacegroup_number})"
    openings = (
        f"{facts.formula} crystallizes in {symmetry}.",
        f"{facts.formula} is {facts.crystal_system} with space group {facts.spacegroup_symbol}.",
        f"A {facts.crystal_system} {facts.formula} crystal, space group {facts.spacegroup_symbol}.",
    )
    opening = openings[0] if rng is None else openings[int(rng.integers(len(openings)))]
    rest = [_environment_sentence(env, rng) for env in facts.environments]
    rest.append(f"The bonded network forms {_DIMENSION_WORDS[facts.dimensionality]}.")
    rest.append(f"The density is {facts.density:.2f} g/cm³ with {facts.n_sites} atoms in the cell.")
    return opening, rest


def describe(crystal: Crystal | CrystalFacts, *, rng: np.random.Generator | None = None, drop: float = 0.3) -> str:
    """A plain-English description of ``crystal`` (full and deterministic without ``rng``).

    With ``rng``: a training variant in which each sentence after the opening is dropped with
    probability ``drop``, the survivors are shuffled and phrasings vary. When the symmetry is
    dropped from the opening (a third of the variants), only the formula remains of it.
    """
    facts = crystal if isinstance(crystal, CrystalFacts) else crystal_facts(crystal)
    opening, rest = _sentences(facts, rng)
    if rng is None:
        return " ".join([opening, *rest])
    if rng.random() < 1 / 3:
        opening = f"{facts.formula}."
    kept = [s for s in rest if rng.random() >= drop]
    rng.shuffle(kept)
    return " ".join([opening, *kept])


def describe_many(
    crystals: Sequence[Crystal], *, variants: int = 0, seed: int = 0, progress: bool = False
) -> list[list[str]]:
    """Per crystal, the full description followed by ``variants`` seeded training variants."""
    from crystaloop.data.progress import progress_bar

    rng = np.random.default_rng(seed)
    out: list[list[str]] = []
    with progress_bar(progress) as bar:
        task = bar.add_task("describing crystals", total=len(crystals))
        for crystal in crystals:
            facts = crystal_facts(crystal)
            out.append([describe(facts)] + [describe(facts, rng=rng) for _ in range(variants)])
            bar.advance(task)
    return out
