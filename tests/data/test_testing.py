"""The invariance helpers of ``crystaloop.data.testing`` are themselves right.

Transformations must describe the same crystal (canonical hash and minimum-image distances
unchanged), supercells must scale as they should, and the assertions must catch a deliberately
broken function while letting invariant ones pass.
"""

from __future__ import annotations

import numpy as np
import pytest

from crystaloop.data.crystal import Crystal
from crystaloop.data.graphs import minimum_image_distances
from crystaloop.data.testing import (
    FLOAT32_TOLERANCE,
    FLOAT64_TOLERANCE,
    TRANSFORMS,
    apply_basis_change,
    assert_equivariant_sites,
    assert_invariant,
    assert_supercell,
    change_basis,
    check_all,
    make_supercell,
    permute_sites,
    random_crystal,
    random_rotation,
    random_rotation_matrix,
    random_translation,
    random_unimodular,
    rotate,
    translate,
)


def _perovskite() -> Crystal:
    return Crystal.from_symbols(
        np.eye(3) * 3.905,
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
        ["Sr", "Ti", "O", "O", "O"],
    )


def _crystals() -> list[Crystal]:
    rng = np.random.default_rng(7)
    return [_perovskite(), random_crystal(rng, n_sites=5), random_crystal(rng, n_sites=8, elements=("C",))]


def _transformed(name: str, crystal: Crystal, rng: np.random.Generator) -> Crystal:
    if name == "rotation":
        return random_rotation(crystal, rng)
    if name == "translation":
        return random_translation(crystal, rng)
    if name == "permutation":
        return permute_sites(crystal, rng)[0]
    return change_basis(crystal, rng)


def _sorted_distances(crystal: Crystal) -> np.ndarray:
    return np.sort(minimum_image_distances(crystal).ravel())


def _per_site_distances(crystal: Crystal) -> np.ndarray:
    """(N, N) row i: sorted minimum-image distances from site i (a per-site invariant)."""
    return np.sort(minimum_image_distances(crystal), axis=1)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_transformations_describe_the_same_crystal(name: str) -> None:
    rng = np.random.default_rng(11)
    for crystal in _crystals():
        for _ in range(3):
            moved = _transformed(name, crystal, rng)
            assert moved.canonical_hash() == crystal.canonical_hash(), name
            np.testing.assert_allclose(_sorted_distances(moved), _sorted_distances(crystal), atol=1e-9)
            assert moved.composition == crystal.composition
            assert moved.volume == pytest.approx(crystal.volume, rel=1e-12)


def test_rotation_is_proper_and_leaves_fractions_alone() -> None:
    rng = np.random.default_rng(3)
    rotation = random_rotation_matrix(rng)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    crystal = _crystals()[1]
    rotated = rotate(crystal, rotation)
    np.testing.assert_array_equal(rotated.frac_coords, crystal.frac_coords)
    np.testing.assert_allclose(rotated.cart_coords, crystal.cart_coords @ rotation.T, atol=1e-12)


def test_translation_wraps_and_permutation_reports_the_order() -> None:
    rng = np.random.default_rng(4)
    crystal = _crystals()[1]
    shifted = translate(crystal, [0.75, -0.25, 2.5])
    assert shifted.frac_coords.min() >= 0 and shifted.frac_coords.max() < 1
    np.testing.assert_allclose(
        (shifted.frac_coords - crystal.frac_coords - [0.75, -0.25, 2.5] + 0.5) % 1 - 0.5, 0, atol=1e-12
    )
    permuted, permutation = permute_sites(crystal, rng)
    assert sorted(permutation.tolist()) == list(range(crystal.n_sites))
    assert not (permutation == np.arange(crystal.n_sites)).any()  # every site moves
    np.testing.assert_array_equal(permuted.frac_coords, crystal.frac_coords[permutation])
    np.testing.assert_array_equal(permuted.numbers, crystal.numbers[permutation])


def test_basis_change_is_unimodular_and_keeps_cartesian_sites() -> None:
    rng = np.random.default_rng(5)
    crystal = _crystals()[2]
    for _ in range(20):
        matrix = random_unimodular(rng)
        assert matrix.dtype.kind == "i" and abs(round(np.linalg.det(matrix))) == 1
        assert np.abs(matrix).max() <= 2 and not np.array_equal(matrix, np.eye(3))
        changed = apply_basis_change(crystal, matrix)
        np.testing.assert_allclose(changed.lattice, matrix @ crystal.lattice)
        # each site is the same point of space up to a lattice vector of the new basis
        offset = np.linalg.solve(changed.lattice.T, (changed.cart_coords - crystal.cart_coords).T).T
        np.testing.assert_allclose(offset, np.round(offset), atol=1e-9)
    with pytest.raises(ValueError, match="determinant"):
        apply_basis_change(crystal, np.diag([2, 1, 1]))


@pytest.mark.parametrize("reps", [(2, 1, 1), (1, 2, 3), (2, 2, 2)])
def test_supercell_scales_volume_and_composition(reps: tuple[int, int, int]) -> None:
    crystal = _perovskite()
    supercell, site_map = make_supercell(crystal, reps)
    n_cells = int(np.prod(reps))
    assert supercell.volume == pytest.approx(crystal.volume * n_cells)
    assert supercell.composition == {element: count * n_cells for element, count in crystal.composition.items()}
    assert supercell.density == pytest.approx(crystal.density)
    np.testing.assert_array_equal(supercell.numbers, crystal.numbers[site_map])
    # every supercell site sits on its original site, up to an original lattice vector
    offset = np.linalg.solve(crystal.lattice.T, (supercell.cart_coords - crystal.cart_coords[site_map]).T).T
    np.testing.assert_allclose(offset, np.round(offset), atol=1e-9)
    # and all copies are distinct points
    assert minimum_image_distances(supercell).min() > 1.0
    with pytest.raises(ValueError, match="positive"):
        make_supercell(crystal, (0, 1, 1))


def test_random_crystal_is_plausible_and_seeded() -> None:
    for seed, n_sites in [(0, 2), (1, 6), (2, 12)]:
        crystal = random_crystal(np.random.default_rng(seed), n_sites=n_sites, elements=("Si", "O"))
        assert crystal.n_sites == n_sites
        assert set(crystal.elements) <= {"Si", "O"}
        assert crystal.min_pair_distance() > 1.0
        assert 10.0 < crystal.volume / n_sites < 20.0
        alpha_beta_gamma = crystal.lattice_parameters[3:]
        assert all(50.0 < angle < 130.0 for angle in alpha_beta_gamma)
        again = random_crystal(np.random.default_rng(seed), n_sites=n_sites, elements=("Si", "O"))
        np.testing.assert_array_equal(again.frac_coords, crystal.frac_coords)
    with pytest.raises(RuntimeError, match="no random crystal"):
        random_crystal(np.random.default_rng(0), n_sites=8, volume_per_site=1.0, min_distance=2.0, max_tries=2)


@pytest.mark.parametrize(
    "fn",
    [
        lambda c: c.volume,
        lambda c: c.density,
        _sorted_distances,
        lambda c: np.sort(np.linalg.eigvalsh(c.lattice @ c.lattice.T)) * 0 + c.volume,
    ],
    ids=["volume", "density", "sorted-distances", "volume-array"],
)
def test_invariant_functions_pass(fn) -> None:
    rng = np.random.default_rng(12)
    for crystal in _crystals():
        assert_invariant(fn, crystal, rng=rng)
        assert max(check_all(fn, crystal, rng).values()) < 1e-9


def test_non_invariant_function_is_caught_and_named() -> None:
    rng = np.random.default_rng(13)
    crystal = _crystals()[1]
    with pytest.raises(AssertionError, match=r"translation.*max deviation"):
        assert_invariant(lambda c: c.frac_coords[0], crystal, rng=rng, transforms=("translation",))
    with pytest.raises(AssertionError, match="permutation"):
        assert_invariant(lambda c: c.frac_coords[0], crystal, rng=rng, transforms=("permutation",))
    with pytest.raises(AssertionError, match="rotation"):  # fractions ignore rotation; Cartesian rows do not
        assert_invariant(lambda c: c.lattice[0], crystal, rng=rng, transforms=("rotation",))
    with pytest.raises(AssertionError, match="basis"):
        assert_invariant(lambda c: c.lattice_parameters[:3], crystal, rng=rng, transforms=("basis",))
    deviations = check_all(lambda c: c.frac_coords[0], crystal, rng)
    assert set(deviations) == set(TRANSFORMS)
    assert deviations["rotation"] == 0.0 and deviations["translation"] > 0.01


def test_tolerance_is_respected() -> None:
    rng = np.random.default_rng(14)
    crystal = _crystals()[1]

    def noisy(c: Crystal) -> float:  # invariant up to a 1e-6 wobble that depends on the description
        return c.volume + 1e-6 * float(c.frac_coords[0, 0])

    with pytest.raises(AssertionError, match=r"allowed 1e-08 = atol 1e-08 \+ rtol 0"):
        assert_invariant(noisy, crystal, rng=rng, transforms=("translation",), rtol=0.0)
    assert_invariant(noisy, crystal, rng=rng, transforms=("translation",), atol=1e-5, rtol=0.0)
    assert_invariant(noisy, crystal, rng=rng, transforms=("translation",), precision="float32")
    assert FLOAT32_TOLERANCE.atol > FLOAT64_TOLERANCE.atol


def test_float32_precision_sets_torch_default_dtype() -> None:
    import torch

    seen = []

    def probe(c: Crystal) -> float:
        seen.append(torch.get_default_dtype())
        return torch.tensor(c.volume).sum()

    before = torch.get_default_dtype()
    rng = np.random.default_rng(15)
    assert_invariant(probe, _perovskite(), rng=rng, precision="float32", transforms=("rotation",))
    assert_invariant(probe, _perovskite(), rng=rng, transforms=("rotation",))
    assert seen == [torch.float32] * 2 + [torch.float64] * 2
    assert torch.get_default_dtype() == before


def _site_forces(crystal: Crystal) -> np.ndarray:
    """A pair-force-like per-site vector (N, 3) in Cartesian space: equivariant by construction."""
    import torch

    from crystaloop.data.graphs import radius_graph_pbc, stack_crystals

    tensors = stack_crystals([crystal])
    index, _, vec = radius_graph_pbc(tensors["lattice"], tensors["frac_coords"], tensors["num_atoms"], 4.0)
    weights = torch.exp(-vec.norm(dim=-1))[:, None]
    return torch.zeros(crystal.n_sites, 3, dtype=vec.dtype).index_add_(0, index[0], vec * weights).numpy()


def test_site_equivariance_checks() -> None:
    rng = np.random.default_rng(16)
    crystal = _crystals()[1]
    assert_equivariant_sites(_per_site_distances, crystal, rng=rng)
    assert_equivariant_sites(lambda c: c.numbers, crystal, rng=rng)
    assert_equivariant_sites(_site_forces, crystal, rng=rng, vector=True)
    with pytest.raises(AssertionError, match="rotation"):  # a vector output declared as scalar
        assert_equivariant_sites(_site_forces, crystal, rng=rng)
    with pytest.raises(AssertionError, match="translation"):
        assert_equivariant_sites(lambda c: c.frac_coords, crystal, rng=rng, transforms=("translation",))
    with pytest.raises(AssertionError, match="permutation"):  # does not follow the sites
        assert_equivariant_sites(lambda c: c.cart_coords[::-1] * 0 + np.arange(c.n_sites)[:, None], crystal, rng=rng)
    with pytest.raises(AssertionError, match="per-site output must have shape"):
        assert_equivariant_sites(lambda c: c.volume, crystal, rng=rng)


def test_supercell_assertion() -> None:
    crystal = _crystals()[1]
    assert_supercell(lambda c: c.density, crystal, (2, 1, 1))
    assert_supercell(lambda c: c.volume / c.n_sites, crystal, (1, 2, 2), kind="intensive")
    assert_supercell(lambda c: c.volume, crystal, (2, 2, 1), kind="extensive")
    assert_supercell(lambda c: float(c.n_sites), crystal, (1, 1, 3), kind="extensive")
    with pytest.raises(AssertionError, match=r"supercell \(2, 1, 1\) \(intensive\)"):
        assert_supercell(lambda c: c.volume, crystal, (2, 1, 1))
    with pytest.raises(AssertionError, match="extensive"):
        assert_supercell(lambda c: c.density, crystal, (2, 1, 1), kind="extensive")


def test_unknown_names_are_refused() -> None:
    rng = np.random.default_rng(17)
    with pytest.raises(ValueError, match="unknown transformation 'mirror'"):
        assert_invariant(lambda c: c.volume, _perovskite(), rng=rng, transforms=("mirror",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="precision must be one of"):
        check_all(lambda c: c.volume, _perovskite(), rng, precision="float16")  # type: ignore[arg-type]
