"""Helpers for testing and benchmarking the store: seeded test crystals and a concurrent writer.

They live in the package (not under ``tests/``) so that worker processes started with the
``spawn`` method can import them, and so that the benchmarks reuse the same generators.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from crystaloop.data.crystal import Crystal
from crystaloop.data.records import Candidate, CandidateStatus, Condition, Provenance

__all__ = [
    "rock_salt",
    "perovskite",
    "diamond",
    "base_cells",
    "perturbed_crystals",
    "make_candidates",
    "concurrent_add_worker",
]


def rock_salt(a: float = 5.64, cation: str = "Na", anion: str = "Cl") -> Crystal:
    """Conventional rock-salt cell (8 sites), lattice constant ``a`` in Å."""
    frac = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    shifted = [[(x + 0.5) % 1.0, y, z] for x, y, z in frac]
    return Crystal.from_symbols(np.eye(3) * a, frac + shifted, [cation] * 4 + [anion] * 4)


def perovskite(a: float = 3.905, a_site: str = "Sr", b_site: str = "Ti", anion: str = "O") -> Crystal:
    """Cubic ABX3 perovskite (5 sites), lattice constant ``a`` in Å (SrTiO3 by default)."""
    frac = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    return Crystal.from_symbols(np.eye(3) * a, frac, [a_site, b_site, anion, anion, anion])


def diamond(a: float = 3.567, element: str = "C") -> Crystal:
    """Primitive diamond cell (2 sites), conventional lattice constant ``a`` in Å."""
    lattice = 0.5 * a * np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    return Crystal.from_symbols(lattice, [[0, 0, 0], [0.25, 0.25, 0.25]], [element, element])


def base_cells() -> dict[str, Crystal]:
    """Small reference cells by name: NaCl, MgO, SrTiO3, BaTiO3, SrZrO3, C, Si."""
    return {
        "NaCl": rock_salt(5.64, "Na", "Cl"),
        "MgO": rock_salt(4.21, "Mg", "O"),
        "SrTiO3": perovskite(3.905, "Sr", "Ti", "O"),
        "BaTiO3": perovskite(4.00, "Ba", "Ti", "O"),
        "SrZrO3": perovskite(4.15, "Sr", "Zr", "O"),
        "C": diamond(3.567, "C"),
        "Si": diamond(5.431, "Si"),
    }


def perturbed_crystals(
    base: Crystal,
    n: int,
    rng: np.random.Generator,
    *,
    displacement: float = 0.03,
    strain: float = 0.03,
    distinct: bool = True,
) -> list[Crystal]:
    """``n`` variants of ``base``: each site moved and the cell strained by random amounts.

    Args:
        base: the cell to perturb.
        n: how many variants.
        rng: the only source of randomness (pass ``np.random.default_rng(seed)``).
        displacement: std of the fractional displacement of each site (dimensionless).
        strain: half-width of the uniform random strain of each lattice component (relative).
        distinct: make sure all variants have different canonical hashes (computes them, about
            5 ms each; the hashes stay cached on the crystals). ``False`` is fast but only
            distinct with overwhelming probability.
    """
    out: list[Crystal] = []
    seen: set[str] = set()
    nsites = base.n_sites
    while len(out) < n:
        strain_matrix = np.eye(3) + rng.uniform(-strain, strain, size=(3, 3))
        crystal = Crystal(
            base.lattice @ strain_matrix,
            base.frac_coords + rng.normal(0.0, displacement, size=(nsites, 3)),
            base.numbers,
        )
        if distinct:
            key = crystal.canonical_hash()
            if key in seen:
                continue
            seen.add(key)
        out.append(crystal)
    return out


def make_candidates(
    n: int,
    seed: int,
    *,
    bases: Sequence[str] | None = None,
    campaign: str | None = None,
    iteration: int | None = None,
    status: CandidateStatus | str = CandidateStatus.GENERATED,
    distinct: bool = True,
) -> list[Candidate]:
    """``n`` candidates cycling through ``bases`` (names from :func:`base_cells`), seeded.

    With ``distinct`` (default) all have different ids, also across bases.
    """
    cells = base_cells()
    names = list(bases) if bases is not None else list(cells)
    rng = np.random.default_rng(seed)
    per_base = [perturbed_crystals(cells[name], -(-n // len(names)), rng, distinct=distinct) for name in names]
    crystals = [per_base[i % len(names)][i // len(names)] for i in range(n)]
    provenance = Provenance(component="store-tests", version="0", seed=seed, campaign=campaign, iteration=iteration)
    condition = Condition(properties={"formation_energy": -1.0})
    return [Candidate(crystal=c, provenance=provenance, condition=condition, status=status) for c in crystals]


def concurrent_add_worker(
    url: str, candidates: list[Candidate], chunk_size: int, barrier: Any, results: Any, name: str
) -> None:
    """Body of a writer process: open the store, wait for the others, add, report.

    Puts ``(name, added, existing, error_text_or_None)`` on the ``results`` queue.
    """
    from crystaloop.data.store.store import CandidateStore

    try:
        with CandidateStore(url) as store:
            barrier.wait(timeout=60)
            report = store.add_many(candidates, chunk_size=chunk_size, compute_spacegroup=False)
        results.put((name, report.added, report.existing, None))
    except Exception as exc:  # reported to the parent, which fails the test with it
        results.put((name, -1, -1, f"{type(exc).__name__}: {exc}"))
