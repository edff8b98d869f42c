"""Simulated powder patterns: shape, scale, physics, invariance; augmentation is seeded and bounded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crystaloop.data.crystal import Crystal
from crystaloop.data.testing import assert_invariant, make_supercell, random_crystal
from crystaloop.data.xrd_grid import CU_KALPHA_WAVELENGTH, DEFAULT_GRID, N_POINTS, two_theta_grid
from crystaloop.multimodal.xrd import AugmentConfig, augment_patterns, peak_list, simulate_pattern, simulate_patterns


def _rocksalt(a: float = 5.64) -> Crystal:
    frac = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    frac += [[x + 0.5, y, z] for x, y, z in frac]
    return Crystal.from_symbols(np.eye(3) * a, frac, ["Na"] * 4 + ["Cl"] * 4)


def test_grid_constants_describe_one_grid() -> None:
    x = two_theta_grid()
    assert x.shape == (N_POINTS,)
    assert x[0] == pytest.approx(5.0) and x[-1] == pytest.approx(90.0)
    assert np.allclose(np.diff(x), DEFAULT_GRID.step)


def test_pattern_is_normalised_and_peaks_sit_at_bragg_angles() -> None:
    crystal = _rocksalt()
    pattern = simulate_pattern(crystal)
    assert pattern.shape == (N_POINTS,) and pattern.dtype == np.float32
    assert pattern.max() == pytest.approx(1.0) and pattern.min() >= 0.0
    # Rock salt's strongest reflection is (200): d = a/2, 2θ = 2 asin(λ / (2d)).
    expected = np.degrees(2 * np.arcsin(CU_KALPHA_WAVELENGTH / 5.64))
    assert two_theta_grid()[np.argmax(pattern)] == pytest.approx(expected, abs=DEFAULT_GRID.step)
    positions, heights = peak_list(crystal)
    assert heights.max() == pytest.approx(100.0) and (np.diff(positions) > 0).all()


def test_expanding_the_cell_moves_peaks_to_lower_angles() -> None:
    small, large = simulate_pattern(_rocksalt(5.64)), simulate_pattern(_rocksalt(5.80))
    x = two_theta_grid()
    assert x[np.argmax(large)] < x[np.argmax(small)]
    assert np.abs(small - large).max() > 0.5  # control: the comparison sees a different crystal


@pytest.mark.parametrize("seed", [0, 1])
def test_pattern_invariant_under_rotation_translation_permutation_basis(seed: int) -> None:
    rng = np.random.default_rng(seed)
    crystal = random_crystal(rng, n_sites=5)
    assert_invariant(simulate_pattern, crystal, rng=rng, precision="float32")
    assert_invariant(simulate_pattern, _rocksalt(), rng=rng, precision="float32")


def test_supercell_gives_the_same_pattern() -> None:
    crystal = random_crystal(np.random.default_rng(3), n_sites=4)
    supercell, _ = make_supercell(crystal, (2, 1, 1))
    assert np.abs(simulate_pattern(supercell) - simulate_pattern(crystal)).max() < 1e-4


def test_batch_equals_single() -> None:
    crystals = [random_crystal(np.random.default_rng(s), n_sites=3) for s in range(3)]
    batch = simulate_patterns(crystals)
    assert batch.shape == (3, N_POINTS)
    for row, crystal in zip(batch, crystals, strict=True):
        assert np.array_equal(row, simulate_pattern(crystal))


def test_augmentation_is_seeded_bounded_and_leaves_the_input_alone() -> None:
    clean = simulate_patterns([_rocksalt(), random_crystal(np.random.default_rng(4), n_sites=4)])
    before = clean.copy()
    first = augment_patterns(clean, np.random.default_rng(7))
    again = augment_patterns(clean, np.random.default_rng(7))
    other = augment_patterns(clean, np.random.default_rng(8))
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert np.array_equal(clean, before)
    assert first.shape == clean.shape and first.dtype == np.float32
    assert np.allclose(first.max(axis=1), 1.0) and first.min() >= 0.0
    assert augment_patterns(clean[0], np.random.default_rng(7)).shape == (N_POINTS,)


def test_zero_augmentation_is_identity_and_strain_shifts_peaks_the_right_way() -> None:
    clean = simulate_pattern(_rocksalt())
    none = AugmentConfig(max_strain=0, max_zero_shift=0, intensity_jitter=0, max_background=0, noise=0)
    assert np.allclose(augment_patterns(clean, np.random.default_rng(0), none), clean, atol=1e-6)
    strained = augment_patterns(clean, np.random.default_rng(0), none.model_copy(update={"max_strain": 0.02}))
    # The strained pattern is the pattern of a uniformly scaled cell a(1+ε) for some |ε| ≤ 0.02.
    scales = np.linspace(-0.02, 0.02, 41)
    scores = [np.corrcoef(strained, simulate_pattern(_rocksalt(5.64 * (1 + e))))[0, 1] for e in scales]
    assert max(scores) > 0.97
    assert np.corrcoef(strained, clean)[0, 1] < max(scores) - 0.1  # it did move


def test_background_and_noise_change_the_pattern_but_keep_peaks() -> None:
    clean = simulate_pattern(_rocksalt())
    config = AugmentConfig(max_strain=0, max_zero_shift=0, intensity_jitter=0, max_background=0.3, noise=0.05)
    noisy = augment_patterns(np.stack([clean] * 8), np.random.default_rng(1), config)
    assert np.abs(noisy - clean).max() > 0.01
    assert (np.argmax(noisy, axis=1) == np.argmax(clean)).mean() >= 0.75
    other = simulate_pattern(_rocksalt(6.2))
    same = np.mean([np.corrcoef(row, clean)[0, 1] for row in noisy])
    assert same > 0.5 and same > np.mean([np.corrcoef(row, other)[0, 1] for row in noisy]) + 0.3


def test_augment_refuses_a_pattern_on_another_grid() -> None:
    with pytest.raises(ValueError, match=str(N_POINTS)):
        augment_patterns(np.ones((2, 100)), np.random.default_rng(0))


def test_fixture_cif_patterns(fixtures_dir: Path) -> None:
    from pymatgen.core import Structure

    crystal = Crystal.from_pymatgen(Structure.from_file(fixtures_dir / "structures" / "SrTiO3.cif"))
    pattern = simulate_pattern(crystal)
    assert pattern.max() == pytest.approx(1.0) and (pattern > 0.05).sum() > 10


def test_a_pattern_without_peaks_stays_empty_under_augmentation() -> None:
    empty = np.zeros((2, N_POINTS))
    assert not augment_patterns(empty, np.random.default_rng(0)).any()
