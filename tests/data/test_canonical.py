"""Canonical content hash: one id per crystal, whatever way it is written."""

from __future__ import annotations

import numpy as np
import pytest

from crystaloop.data import testing
from crystaloop.data.canonical import canonical_bases
from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets import load_dataset


@pytest.fixture(scope="module")
def real_crystals() -> list[Crystal]:
    perov = load_dataset("perov_5/val", max_rows=15).crystals
    carbon = load_dataset("carbon_24/val", max_rows=25).crystals
    return perov + carbon


def _rewrite(crystal: Crystal, rng: np.random.Generator) -> Crystal:
    """The same crystal, rotated, translated, permuted and in another basis all at once."""
    crystal = testing.random_rotation(crystal, rng)
    crystal = testing.translate(crystal, rng.random(3))
    crystal, _ = testing.permute_sites(crystal, rng)
    return testing.change_basis(crystal, rng)


@pytest.mark.parametrize("transform", ["rotation", "translation", "permutation", "basis", "all"])
def test_hash_is_invariant_on_real_structures(real_crystals: list[Crystal], transform: str) -> None:
    rng = np.random.default_rng(7)
    for crystal in real_crystals:
        if transform == "rotation":
            other = testing.random_rotation(crystal, rng)
        elif transform == "translation":
            other = testing.translate(crystal, rng.random(3))
        elif transform == "permutation":
            other, _ = testing.permute_sites(crystal, rng)
        elif transform == "basis":
            other = testing.change_basis(crystal, rng)
        else:
            other = _rewrite(crystal, rng)
        assert other.canonical_hash() == crystal.canonical_hash(), f"{transform} changed the hash of {crystal}"


def test_hash_separates_different_crystals(real_crystals: list[Crystal]) -> None:
    hashes = {c.canonical_hash() for c in real_crystals}
    assert len(hashes) == len(real_crystals)


def test_small_displacement_beyond_rounding_changes_hash() -> None:
    base = Crystal(np.eye(3) * 4.0, [[0, 0, 0], [0.5, 0.5, 0.5]], [11, 17])
    moved = Crystal(np.eye(3) * 4.0, [[0, 0, 0], [0.5, 0.5, 0.52]], [11, 17])
    assert base.canonical_hash() != moved.canonical_hash()
    # Below the rounding step the two are one candidate (exact-duplicate key by design).
    jitter = Crystal(np.eye(3) * 4.0, [[0, 0, 0], [0.5, 0.5, 0.5 + 1e-7]], [11, 17])
    assert base.canonical_hash() == jitter.canonical_hash()


def test_species_matter() -> None:
    a = Crystal(np.eye(3) * 4.0, [[0, 0, 0], [0.5, 0.5, 0.5]], [11, 17])
    b = Crystal(np.eye(3) * 4.0, [[0, 0, 0], [0.5, 0.5, 0.5]], [19, 17])
    assert a.canonical_hash() != b.canonical_hash()


def test_enantiomorphs_are_kept_apart() -> None:
    # A chiral arrangement (a helix of four atoms) and its mirror image are different crystals.
    frac = np.array([[0.1, 0.0, 0.0], [0.0, 0.3, 0.25], [0.6, 0.15, 0.5], [0.25, 0.7, 0.75]])
    lattice = np.diag([4.0, 4.6, 5.3])
    right = Crystal(lattice, frac, [6, 7, 8, 14])
    left = Crystal(lattice, frac * [1, 1, -1], [6, 7, 8, 14])
    assert right.canonical_hash() != left.canonical_hash()
    # ... while a proper rotation of one of them is still the same crystal.
    assert testing.random_rotation(right, np.random.default_rng(3)).canonical_hash() == right.canonical_hash()


def test_near_degenerate_reduction_is_stable() -> None:
    # Two lattice vectors of almost equal length make plain Niggli reduction basis-dependent;
    # the tolerant choice of canonical basis must give one hash for every basis.
    lattice = np.array([[2.47413, 0.0, 0.0], [-0.000774, 3.69686, 0.0], [-1.2336, -1.5693, 5.5142]])
    crystal = Crystal(lattice, np.random.default_rng(0).random((6, 3)), [6] * 6)
    rng = np.random.default_rng(11)
    hashes = {testing.change_basis(crystal, rng).canonical_hash() for _ in range(20)}
    assert hashes == {crystal.canonical_hash()}


def test_canonical_bases_span_the_same_lattice() -> None:
    lattice = np.array([[3.0, 0.2, 0.0], [1.4, 2.9, 0.1], [0.3, -0.4, 4.4]])
    for basis in canonical_bases(lattice):
        transform = basis @ np.linalg.inv(lattice)
        np.testing.assert_allclose(transform, np.round(transform), atol=1e-9)
        assert round(abs(np.linalg.det(transform))) == 1
