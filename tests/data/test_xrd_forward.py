"""The torch powder-XRD forward model: agrees with pymatgen, ignores how a crystal is written,
has finite useful gradients, and refuses malformed input by name.

The agreement threshold: the model differs from ``multimodal.xrd.simulate_pattern`` only where it
means to (each peak drawn over ±20 FWHM, its Lorentzian part lowered to meet zero there, by at
most 6.3e-4 of its height; pymatgen drops peaks below 1e-5 of the strongest), which costs at
most 4.9e-5 in ``1 − cos`` over all 1163 shipped validation structures (benchmarks/RESULTS.md,
"XRD forward model"). ``1 − cos ≤ 1e-4`` keeps a 2× margin over that worst case and is still
far tighter than any physics error: the control shows that a 1 % strain alone drops the cosine
below 0.9.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crystaloop.data.crystal import Crystal
from crystaloop.data.errors import CrystaloopError, InvalidStructureError, UnknownComponentError
from crystaloop.data.graphs import stack_crystals
from crystaloop.data.testing import assert_invariant, make_supercell, random_crystal
from crystaloop.data.xrd_forward import (
    DEFAULT_MAX_INDEX,
    cosine_similarity,
    pattern_misfit,
    powder_pattern,
    powder_pattern_of,
    rwp,
    scattering_coefficients,
)
from crystaloop.data.xrd_grid import DEFAULT_GRID, PatternGrid, pseudo_voigt

WIDE = PatternGrid(two_theta_min=10.0, two_theta_max=80.0, n_points=141, fwhm=2.0)
"""A coarse grid with wide peaks: smooth enough for finite-difference gradient checks."""


@pytest.fixture(scope="module")
def shipped() -> dict[str, list[Crystal]]:
    """12 validation structures of each shipped dataset."""
    from crystaloop.data.datasets import load_dataset

    return {name: load_dataset(name, max_rows=12).crystals for name in ("perov_5/val", "carbon_24/val")}


def _tensors(crystals: list[Crystal], dtype: torch.dtype = torch.float64, grad: bool = False) -> tuple:
    stacked = stack_crystals(crystals, dtype=dtype)
    lattice, frac = stacked["lattice"], stacked["frac_coords"]
    if grad:
        lattice, frac = lattice.clone().requires_grad_(), frac.clone().requires_grad_()
    return lattice, frac, stacked["atomic_numbers"], stacked["num_atoms"]


def _strained(crystal: Crystal, strain: float) -> Crystal:
    return Crystal(crystal.lattice * (1.0 + strain), crystal.frac_coords, crystal.numbers)


def _rocksalt(a: float = 5.64) -> Crystal:
    frac = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    frac += [[x + 0.5, y, z] for x, y, z in frac]
    return Crystal.from_symbols(np.eye(3) * a, frac, ["Na"] * 4 + ["Cl"] * 4)


# ---------------------------------------------------------------------------- agreement with pymatgen
@pytest.mark.parametrize("split", ["perov_5/val", "carbon_24/val"])
def test_agrees_with_pymatgen_on_shipped_structures(shipped: dict[str, list[Crystal]], split: str) -> None:
    from crystaloop.multimodal.xrd import simulate_pattern

    crystals = shipped[split]
    mine = powder_pattern(*_tensors(crystals)).numpy()
    for row, crystal in zip(mine, crystals, strict=True):
        reference = simulate_pattern(crystal).astype(np.float64)
        assert row.max() == pytest.approx(1.0)
        cosine = row @ reference / (np.linalg.norm(row) * np.linalg.norm(reference))
        assert cosine > 1 - 1e-4, f"{crystal.reduced_formula}: cosine {cosine:.6f}"
        assert np.abs(row - reference).max() < 5e-3
    # Control: the threshold is discriminating; a 1 % larger cell is far outside it.
    moved = powder_pattern_of(_strained(crystals[0], 0.01))
    reference = simulate_pattern(crystals[0])
    assert moved @ reference / (np.linalg.norm(moved) * np.linalg.norm(reference)) < 0.9


def test_strongest_rocksalt_peak_sits_at_the_200_bragg_angle() -> None:
    pattern = powder_pattern_of(_rocksalt())
    expected = np.degrees(2 * np.arcsin(DEFAULT_GRID.wavelength / 5.64))  # d(200) = a/2
    assert DEFAULT_GRID.two_theta()[np.argmax(pattern)] == pytest.approx(expected, abs=DEFAULT_GRID.step)


def test_scattering_coefficients_are_pymatgens() -> None:
    from pymatgen.analysis.diffraction.xrd import ATOMIC_SCATTERING_PARAMS

    table = scattering_coefficients()
    for symbol, z in (("H", 1), ("Sr", 38), ("Cf", 98)):
        np.testing.assert_array_equal(table[z], np.asarray(ATOMIC_SCATTERING_PARAMS[symbol]))


@pytest.mark.parametrize("grid", [DEFAULT_GRID, WIDE, PatternGrid(eta=0.0), PatternGrid(eta=1.0, fwhm=0.08)])
def test_one_peak_is_the_grids_pseudo_voigt_cut_at_its_window(grid: PatternGrid) -> None:
    """The Chebyshev-tabulated window reproduces ``pseudo_voigt`` up to the documented edge offset."""
    from crystaloop.data.xrd_forward import _broaden, lorentzian_in_window

    x = grid.two_theta()
    centres = np.array([x[0] - 0.4 * grid.fwhm, 30.0 + 0.37 * grid.step, 41.0 + 0.5 * grid.step, x[-1] + 0.3])
    mine = _broaden(torch.tensor(centres[None]), torch.ones(1, len(centres)).double(), grid)[0].numpy()
    delta = (x[:, None] - centres[None, :]) / grid.fwhm
    gauss = pseudo_voigt(x, centres, grid.fwhm, eta=0.0)
    expected = grid.eta * lorentzian_in_window(delta) + (1.0 - grid.eta) * gauss
    np.testing.assert_allclose(mine, expected.sum(axis=1), atol=1e-8)
    full = pseudo_voigt(x, centres, grid.fwhm, grid.eta).sum(axis=1)
    assert np.abs(mine - full).max() < len(centres) * 1.25e-3 * grid.eta + 1e-10  # the documented bound per peak


# ---------------------------------------------------------------------------- batching, dtypes, invariance
def test_batch_equals_single_and_float32_follows_float64(shipped: dict[str, list[Crystal]]) -> None:
    crystals = [*shipped["perov_5/val"][:3], *shipped["carbon_24/val"][:3], _rocksalt()]
    batch = powder_pattern(*_tensors(crystals))
    assert batch.shape == (len(crystals), DEFAULT_GRID.n_points) and batch.dtype == torch.float64
    for row, crystal in zip(batch, crystals, strict=True):
        torch.testing.assert_close(row, powder_pattern(*_tensors([crystal]))[0], atol=1e-10, rtol=0)
    single = powder_pattern(*_tensors(crystals, torch.float32))
    assert single.dtype == torch.float32
    torch.testing.assert_close(single.double(), batch, atol=2e-4, rtol=0)


@pytest.mark.parametrize("seed", [0, 1])
def test_invariant_under_rotation_translation_permutation_basis(seed: int, shipped: dict[str, list[Crystal]]) -> None:
    rng = np.random.default_rng(seed)

    def pattern64(crystal: Crystal) -> torch.Tensor:
        return powder_pattern(*_tensors([crystal]))[0]

    for crystal in (random_crystal(rng, n_sites=5), shipped["carbon_24/val"][seed], _rocksalt()):
        assert_invariant(pattern64, crystal, rng=rng, precision="float64", atol=1e-9)
        assert_invariant(powder_pattern_of, crystal, rng=rng, precision="float32")


def test_supercell_gives_the_same_pattern() -> None:
    crystal = random_crystal(np.random.default_rng(3), n_sites=4)
    supercell, _ = make_supercell(crystal, (2, 1, 2))
    np.testing.assert_allclose(powder_pattern_of(supercell), powder_pattern_of(crystal), atol=1e-5)


def test_pattern_is_periodic_in_the_fractional_coordinates() -> None:
    lattice, frac, numbers, num_atoms = _tensors([_rocksalt()])
    shifted = frac + torch.tensor([1.0, -2.0, 3.0], dtype=frac.dtype)
    torch.testing.assert_close(
        powder_pattern(lattice, shifted, numbers, num_atoms),
        powder_pattern(lattice, frac, numbers, num_atoms),
        atol=1e-10,
        rtol=0,
    )


def test_max_index_caps_the_reflections_of_a_long_cell() -> None:
    long_cell = Crystal.from_symbols(np.diag([4.0, 4.0, 30.0]), [[0, 0, 0], [0.5, 0.5, 0.1]], ["Si", "O"])
    tensors = _tensors([long_cell])
    capped = powder_pattern(*tensors, max_index=3)
    full = powder_pattern(*tensors, max_index=40)
    assert torch.isfinite(capped).all() and (capped - full).abs().max() > 0.05
    torch.testing.assert_close(powder_pattern(*tensors), powder_pattern(*tensors, max_index=DEFAULT_MAX_INDEX))


def test_a_cell_too_small_to_diffract_gives_an_empty_pattern_with_finite_gradients() -> None:
    lattice, frac, numbers, num_atoms = _tensors([Crystal.from_symbols(np.eye(3) * 0.6, [[0, 0, 0]], ["H"])], grad=True)
    pattern = powder_pattern(lattice, frac, numbers, num_atoms)
    assert not pattern.any()
    pattern.sum().backward()
    assert torch.isfinite(lattice.grad).all() and torch.isfinite(frac.grad).all()


# ---------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradients_are_finite_and_nonzero(dtype: torch.dtype, shipped: dict[str, list[Crystal]]) -> None:
    crystals = [shipped["perov_5/val"][0], shipped["carbon_24/val"][0]]
    target = powder_pattern(*_tensors(crystals, dtype))
    lattice, frac, numbers, num_atoms = _tensors([_strained(c, 0.002) for c in crystals], dtype, grad=True)
    with torch.no_grad():
        frac += 0.01 * torch.randn(frac.shape, generator=torch.Generator().manual_seed(0), dtype=dtype)
    pattern_misfit(powder_pattern(lattice, frac, numbers, num_atoms), target).sum().backward()
    for grad in (lattice.grad, frac.grad):
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert (lattice.grad.flatten(1).norm(dim=1) > 0).all()  # every crystal of the batch gets a gradient


def test_gradcheck_in_float64_on_a_wide_profile() -> None:
    crystal = Crystal.from_symbols(
        np.array([[4.1, 0.2, 0.0], [0.3, 4.4, 0.1], [0.0, -0.2, 4.7]]), [[0.1, 0.2, 0.3], [0.6, 0.55, 0.8]], ["Ti", "O"]
    )
    lattice, frac, numbers, num_atoms = _tensors([crystal], grad=True)

    def pattern(lattice: torch.Tensor, frac: torch.Tensor) -> torch.Tensor:
        return powder_pattern(lattice, frac, numbers, num_atoms, WIDE)

    assert torch.autograd.gradcheck(pattern, (lattice, frac), eps=1e-6, atol=1e-5, rtol=1e-3)


def test_a_gradient_step_on_the_lattice_lowers_the_misfit() -> None:
    truth = _rocksalt(5.64)
    target = powder_pattern(*_tensors([truth]), WIDE)
    lattice, frac, numbers, num_atoms = _tensors([_strained(truth, 0.01)], grad=True)
    before = rwp(powder_pattern(lattice, frac, numbers, num_atoms, WIDE), target)
    before.sum().backward()
    with torch.no_grad():
        stepped = lattice - 1e-3 * lattice.grad / lattice.grad.norm()
        after = rwp(powder_pattern(stepped, frac, numbers, num_atoms, WIDE), target)
    assert after.item() < before.item()


# ---------------------------------------------------------------------------- misfits
def test_rwp_is_zero_against_any_positive_rescaling_and_one_against_nothing() -> None:
    pattern = torch.from_numpy(powder_pattern_of(_rocksalt())).double()
    scaled = torch.stack([pattern * c for c in (0.3, 1.0, 7.0)])
    assert rwp(scaled, pattern).abs().max() < 1e-7
    assert rwp(pattern, scaled).abs().max() < 1e-7
    assert rwp(torch.zeros_like(pattern), pattern).item() == pytest.approx(1.0)
    other = torch.from_numpy(powder_pattern_of(_rocksalt(5.65))).double()  # peaks overlap in part
    value = rwp(other, pattern).item()
    assert 0.05 < value < 0.95
    assert rwp(other, pattern, weights=torch.full_like(pattern, 3.0)).item() == pytest.approx(value)
    assert rwp(other, pattern, weights=torch.linspace(0.1, 1.0, len(pattern)).double()).item() != pytest.approx(value)


def test_cosine_is_symmetric_scale_free_and_bounded() -> None:
    a = torch.from_numpy(powder_pattern_of(_rocksalt())).double()
    b = torch.from_numpy(powder_pattern_of(_rocksalt(6.0))).double()
    assert cosine_similarity(a, b).item() == pytest.approx(cosine_similarity(b, a).item())
    assert cosine_similarity(a, 5.0 * a).item() == pytest.approx(1.0)
    assert 0.0 <= cosine_similarity(a, b).item() < 0.9
    assert cosine_similarity(torch.zeros_like(a), a).item() == 0.0
    assert pattern_misfit(b, a, kind="cosine").item() == pytest.approx(1.0 - cosine_similarity(a, b).item())
    assert pattern_misfit(b, a).item() == pytest.approx(rwp(b, a).item())
    assert pattern_misfit(torch.stack([a, b]), a).shape == (2,)


def test_misfits_refuse_patterns_on_different_grids_and_unknown_kinds() -> None:
    with pytest.raises(InvalidStructureError, match=r"\(100,\)"):
        rwp(torch.ones(100), torch.ones(101))
    with pytest.raises(UnknownComponentError, match="'l1'.*cosine, rwp"):
        pattern_misfit(torch.ones(100), torch.ones(100), kind="l1")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- refusals
def _valid_inputs() -> tuple[torch.Tensor, ...]:
    return _tensors([_rocksalt(), random_crystal(np.random.default_rng(0), n_sites=3)])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda lat, f, n, c: (lat[0], f, n, c), r"lattice must have shape \(B, 3, 3\).*\(3, 3\)"),
        (lambda lat, f, n, c: (lat, f[:, :2], n, c), r"frac must have shape \(N, 3\), got \(11, 2\)"),
        (lambda lat, f, n, c: (lat, f.float(), n, c), "torch.float32.*must match lattice"),
        (lambda lat, f, n, c: (lat, f, n[:-1], c), r"numbers must be an integer tensor of shape \(11,\)"),
        (lambda lat, f, n, c: (lat, f, n, c + torch.tensor([0, 1])), "num_atoms sums to 12 but .* 11 sites"),
        (lambda lat, f, n, c: (lat, f, n, torch.tensor([11, 0])), r"num_atoms\[1\] = 0"),
        (lambda lat, f, n, c: (lat, f, torch.where(n == 11, 99, n), c), "atomic number 99 .* allowed: 1..98"),
        (lambda lat, f, n, c: (lat, f, torch.where(n == 11, 0, n), c), "atomic number 0 "),
        (
            lambda lat, f, n, c: (lat * torch.tensor([1.0, 1e-3]).double()[:, None, None], f, n, c),
            "crystal 1 has cell volume",
        ),
        (lambda lat, f, n, c: (lat * torch.nan, f, n, c), "must be finite"),
    ],
)
def test_malformed_inputs_are_refused_by_name(mutate, message: str) -> None:  # noqa: ANN001
    with pytest.raises(InvalidStructureError, match=message) as caught:
        powder_pattern(*mutate(*_valid_inputs()))
    assert isinstance(caught.value, CrystaloopError)


def test_max_index_must_be_positive() -> None:
    with pytest.raises(InvalidStructureError, match="max_index must be a positive integer, got 0"):
        powder_pattern(*_valid_inputs(), max_index=0)


# ---------------------------------------------------------------------------- device
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(shipped: dict[str, list[Crystal]]) -> None:
    crystals = [*shipped["perov_5/val"][:4], *shipped["carbon_24/val"][:4]]
    for dtype in (torch.float64, torch.float32):
        cpu_inputs = _tensors(crystals, dtype, grad=True)
        gpu_inputs = [t.detach().cuda().requires_grad_(t.requires_grad) for t in cpu_inputs]
        cpu, gpu = powder_pattern(*cpu_inputs), powder_pattern(*gpu_inputs)
        assert gpu.is_cuda
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4 if dtype == torch.float32 else 1e-9, rtol=0)
        cpu.pow(2).sum().backward()
        gpu.pow(2).sum().backward()
        torch.testing.assert_close(gpu_inputs[0].grad.cpu(), cpu_inputs[0].grad, atol=1e-2, rtol=1e-3)
