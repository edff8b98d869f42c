"""Differentiable powder X-ray diffraction in torch: crystals in, broadened patterns out.

The torch twin of :func:`crystaloop.multimodal.xrd.simulate_pattern` (pymatgen's
``XRDCalculator`` plus pseudo-Voigt broadening), written so a sampler can push gradients of a
pattern misfit back into the lattice and the fractional coordinates. It lives in ``data`` so the
generator may use it without importing ``multimodal``.

Physics, with pymatgen's conventions (kinematic diffraction, no absorption, no anomalous
dispersion, no Debye–Waller factor):

* reflections: every integer ``hkl`` with ``0 < |G| ≤ g_max``, ``G = hkl · B`` where the rows of
  ``B = (L⁻¹)ᵀ`` are the crystallographic reciprocal vectors (no 2π), ``d = 1/|G|``,
  ``2θ = 2 arcsin(λ|G|/2)``; ``g_max`` belongs to ``grid.two_theta_max`` plus the profile
  half-width, as peaks just outside the grid leak their tails into it. All symmetry-equivalent
  reflections are enumerated, not one per family, so multiplicities come out by themselves;
  Friedel mates ``±hkl`` have equal intensity (real scattering factors), so one half-space is
  computed and counted twice;
* atomic scattering factors ``f(s) = Z − 41.78214 s² Σᵢ aᵢ exp(−bᵢ s²)``, ``s = sin θ/λ = |G|/2``
  (Å⁻¹), with the four ``(aᵢ, bᵢ)`` pairs per element that pymatgen ships
  (``atomic_scattering_params.json``, read from the installed pymatgen; Z = 1..98);
* intensity ``2 |F|² LP`` with ``F = Σⱼ fⱼ exp(2πi hkl·rⱼ)`` and the Lorentz-polarisation factor
  ``LP = (1 + cos² 2θ) / (sin² θ cos θ)``;
* broadening: each reflection is a pseudo-Voigt of the grid's FWHM and Lorentzian fraction
  (:func:`crystaloop.data.xrd_grid.pseudo_voigt`) drawn over ±``w``, ``w`` =
  :data:`PROFILE_HALF_WIDTH_FWHM` FWHMs (3°, 61 grid points each side at the default grid), its
  Lorentzian part lowered so that it meets zero at ``±w`` with zero slope
  (:func:`lorentzian_in_window`; by at most 6.3e-4 of the peak height at η = 0.5): the pattern
  is a smooth function of the peak positions although each peak touches only its own window.
  pymatgen merges reflections closer than 1e-5° into one peak; summing them after broadening is
  the same thing;
* each pattern is scaled to a maximum of 1 (an empty pattern stays zero).

On the shipped validation structures the cosine similarity with ``simulate_pattern`` is above
0.9999 for every structure (the distribution is in benchmarks/RESULTS.md, "XRD forward model").

Shapes and units: ``lattice`` (B, 3, 3) rows in Å; ``frac`` (N, 3) fractional; ``numbers`` (N,)
atomic numbers; ``num_atoms`` (B,) sites per crystal, the sites of crystal ``b`` contiguous and
in batch order; patterns (B, P) with ``P = grid.n_points`` on degrees 2θ.

Cost per call, with ``K`` the most reflections of any crystal of the batch (one Friedel half,
about 1.8 per Å³ of cell at Cu Kα up to 93°: ~180 for the perov_5 cells, ~270 for carbon_24),
``S`` the most distinct elements of a crystal and ``W = 2·⌈w/step⌉ + 3`` window points (123):

* hkl search, without gradient: the lattice is first reduced (pairwise Gauss reduction, batched)
  and the box ``|h'_i| ≤ min(g_max |a'_i|, max_index)`` of the reduced basis, shared by the
  batch, is filtered; so cost and cap do not depend on how the cell was written down;
* structure factors: phases (B, K, Nmax), summed per element with one batched product, then
  scattering factors per element (B, K, S, 4 exponentials);
* broadening, the largest term: a (B, K, W) block of window values, made by one matrix
  product of the (B, K, M) Chebyshev basis of each peak's sub-step shift with a cached (M, W)
  table (M = 12), and summed onto the grid with one ``scatter_add``: 64 × 270 × 123 ≈ 2.1 M
  values for a batch of 64 carbon_24 cells. Measured times are in benchmarks/RESULTS.md.

``max_index`` (default :data:`DEFAULT_MAX_INDEX` = 16: every reflection of cells whose reduced
axes are up to 17 Å long, at Cu Kα up to 93°; the shipped datasets' longest axis is 11.6 Å) caps the box
so a blown-up lattice met during sampling cannot exhaust memory; reflections beyond the cap are
dropped (logged at debug level).

Gradients are finite for any cell of volume ≥ :data:`MIN_VOLUME`: padded reflections and sites
are masked with ``torch.where`` before any square root, ``sin θ`` is clamped below 1, and the
final scaling divides by at least the smallest normal number. Works on CPU and CUDA, float32 and
float64 (the dtype of ``lattice``).

:func:`rwp` and :func:`cosine_similarity` compare patterns; :func:`pattern_misfit` picks one as a
loss for posterior sampling.
"""

from __future__ import annotations

import json
import logging
import math
from functools import cache
from importlib import resources
from typing import Literal

import numpy as np
import torch

from crystaloop.data.crystal import Crystal, element_symbol
from crystaloop.data.errors import InvalidStructureError, UnknownComponentError
from crystaloop.data.xrd_grid import DEFAULT_GRID, PatternGrid

__all__ = [
    "DEFAULT_MAX_INDEX",
    "MIN_VOLUME",
    "MAX_SCATTERING_Z",
    "PROFILE_HALF_WIDTH_FWHM",
    "profile_half_width",
    "lorentzian_in_window",
    "scattering_coefficients",
    "powder_pattern",
    "powder_pattern_of",
    "rwp",
    "cosine_similarity",
    "pattern_misfit",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_INDEX = 16
"""Default cap on the reduced-basis ``|h|, |k|, |l|`` (covers reduced axes up to 17 Å on the default grid)."""
MIN_VOLUME = 0.1
"""Smallest cell volume accepted, Å³ (the structural-validity floor of the design's protocols)."""
PROFILE_HALF_WIDTH_FWHM = 20.0
"""Each peak is drawn over ± this many FWHMs (3° 2θ at the default grid); see the module notes."""
MAX_SCATTERING_Z = 98
"""Highest atomic number with scattering coefficients in pymatgen's table (Cf)."""
_FORM_FACTOR_PREFACTOR = 41.78214  # pymatgen's constant in f(s) = Z − 41.78214 s² Σ a exp(−b s²)
_MAX_SIN_THETA = math.sin(math.radians(179.9 / 2.0))  # keeps arcsin and 1/cos θ finite


def profile_half_width(grid: PatternGrid = DEFAULT_GRID) -> float:
    """Degrees 2θ each side of a reflection over which its profile is drawn (3° at the default grid)."""
    return PROFILE_HALF_WIDTH_FWHM * grid.fwhm


@cache
def _coefficient_table() -> tuple[np.ndarray, np.ndarray]:
    """((Zmax+1, 4, 2) float64 ``(a, b)`` pairs indexed by Z, (Zmax+1,) bool known) from pymatgen."""
    source = resources.files("pymatgen.analysis.diffraction") / "atomic_scattering_params.json"
    raw = json.loads(source.read_text())
    table = np.zeros((MAX_SCATTERING_Z + 1, 4, 2))
    known = np.zeros(MAX_SCATTERING_Z + 1, dtype=bool)
    for z in range(1, MAX_SCATTERING_Z + 1):
        pairs = raw.get(element_symbol(z))
        if pairs is not None:
            table[z] = np.asarray(pairs, dtype=np.float64)
            known[z] = True
    return table, known


def scattering_coefficients() -> np.ndarray:
    """(99, 4, 2) float64 copy of the ``(aᵢ, bᵢ)`` pairs by atomic number (row 0 unused), b in Å²."""
    return _coefficient_table()[0].copy()


# ---------------------------------------------------------------------------- input checks
def _check_inputs(
    lattice: torch.Tensor, frac: torch.Tensor, numbers: torch.Tensor, num_atoms: torch.Tensor, max_index: int
) -> None:
    """Raise :class:`InvalidStructureError` naming the first malformed input."""
    for name, tensor in (("lattice", lattice), ("frac", frac), ("numbers", numbers), ("num_atoms", num_atoms)):
        if not isinstance(tensor, torch.Tensor):
            raise InvalidStructureError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if lattice.ndim != 3 or lattice.shape[1:] != (3, 3) or lattice.shape[0] == 0:
        raise InvalidStructureError(f"lattice must have shape (B, 3, 3) with B ≥ 1, got {tuple(lattice.shape)}")
    if not lattice.is_floating_point():
        raise InvalidStructureError(f"lattice must be float32 or float64, got {lattice.dtype}")
    n_crystals = lattice.shape[0]
    if frac.ndim != 2 or frac.shape[1] != 3:
        raise InvalidStructureError(f"frac must have shape (N, 3), got {tuple(frac.shape)}")
    if frac.dtype != lattice.dtype or frac.device != lattice.device:
        raise InvalidStructureError(
            f"frac ({frac.dtype}, {frac.device}) must match lattice ({lattice.dtype}, {lattice.device})"
        )
    n_sites = frac.shape[0]
    for name, tensor, size in (("numbers", numbers, n_sites), ("num_atoms", num_atoms, n_crystals)):
        if tensor.shape != (size,) or tensor.is_floating_point() or tensor.is_complex():
            raise InvalidStructureError(
                f"{name} must be an integer tensor of shape ({size},), got {tuple(tensor.shape)} {tensor.dtype}"
            )
    counts = num_atoms.detach().cpu()
    if (counts < 1).any():
        bad = int(torch.nonzero(counts < 1)[0, 0])
        raise InvalidStructureError(f"num_atoms[{bad}] = {int(counts[bad])}; every crystal needs at least one site")
    if int(counts.sum()) != n_sites:
        raise InvalidStructureError(f"num_atoms sums to {int(counts.sum())} but frac and numbers have {n_sites} sites")
    _, known = _coefficient_table()
    z = numbers.detach().cpu().numpy()
    unknown = (z < 1) | (z > MAX_SCATTERING_Z)
    unknown[~unknown] = ~known[z[~unknown]]
    if unknown.any():
        bad_z = int(z[np.argmax(unknown)])
        raise InvalidStructureError(
            f"atomic number {bad_z} has no X-ray scattering factors; allowed: 1..{MAX_SCATTERING_Z} (H..Cf)"
        )
    if not isinstance(max_index, int) or max_index < 1:
        raise InvalidStructureError(f"max_index must be a positive integer, got {max_index!r}")
    detached = lattice.detach()
    if not (torch.isfinite(detached).all() and torch.isfinite(frac.detach()).all()):
        raise InvalidStructureError("lattice and frac must be finite; got NaN or infinity")
    volumes = torch.linalg.det(detached.to(torch.float64)).abs().cpu()
    if (volumes < MIN_VOLUME).any():
        bad = int(torch.nonzero(volumes < MIN_VOLUME)[0, 0])
        raise InvalidStructureError(
            f"crystal {bad} has cell volume {float(volumes[bad]):.3g} Å³; allowed ≥ {MIN_VOLUME} Å³"
        )


# ---------------------------------------------------------------------------- reflections
def _half_space_box(bounds: list[int], device: torch.device) -> torch.Tensor:
    """(M, 3) int64 ``hkl`` with ``|h_i| ≤ bounds[i]``, one of each Friedel pair ``±hkl``, no 000."""
    axes = [torch.arange(-n, n + 1, device=device) for n in bounds]
    box = torch.cartesian_prod(*axes).reshape(-1, 3)
    h, k, l = box.unbind(-1)  # noqa: E741
    half = (h > 0) | ((h == 0) & (k > 0)) | ((h == 0) & (k == 0) & (l > 0))
    return box[half]


def _reduce_basis(lattice64: torch.Tensor, max_rounds: int = 32) -> torch.Tensor:
    """(B, 3, 3) int64 unimodular ``U`` with ``U L`` a short, nearly orthogonal basis of the same lattice.

    Pairwise Gauss reduction repeated until no vector shortens (``a_i ← a_i − round(a_i·a_j /
    a_j·a_j) a_j``; each step keeps or shortens ``a_i``), batched over crystals.
    """
    basis = lattice64.clone()
    transform = torch.eye(3, dtype=torch.float64, device=basis.device).repeat(basis.shape[0], 1, 1)
    for _ in range(max_rounds):
        changed = torch.zeros((), dtype=torch.bool, device=basis.device)
        for i, j in ((0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)):
            mu = torch.round((basis[:, i] * basis[:, j]).sum(-1) / (basis[:, j] ** 2).sum(-1))  # (B,)
            basis[:, i] -= mu[:, None] * basis[:, j]
            transform[:, i] -= mu[:, None] * transform[:, j]
            changed |= (mu != 0).any()
        if not changed:
            break
    return transform.round().to(torch.int64)


@torch.no_grad()
def _reflections(lattice: torch.Tensor, g_max: float, max_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer indices of the reflections with ``|G| ≤ g_max``, padded over the batch.

    The search runs in a reduced basis ``L' = U L`` (:func:`_reduce_basis`), where the box
    ``|h'_i| ≤ g_max |a'_i|`` is tight and ``max_index`` caps the reduced indices, so neither the
    work nor the cap depends on how the cell was written down; the indices found are mapped back
    to the basis of ``lattice``, ``h = h' U⁻ᵀ``.

    Returns:
        ``hkl`` (B, K, 3) int64 and ``valid`` (B, K) bool; ``K ≥ 1`` is the largest count of the
        batch, padded rows are ``valid = False`` (their hkl is (100)).
    """
    lattice64 = lattice.detach().to(torch.float64)
    transform = _reduce_basis(lattice64)  # (B, 3, 3)
    reduced = torch.matmul(transform.to(torch.float64), lattice64)
    reach = reduced.norm(dim=-1) * g_max  # (B, 3): |h'_i| = |G · a'_i| ≤ |G| |a'_i|
    if (reach > max_index).any():
        logger.debug(
            "hkl box capped at %d (needed up to %.1f); high-index reflections dropped", max_index, float(reach.max())
        )
    bounds = torch.floor(reach).clamp(min=0, max=max_index).to(torch.int64).amax(dim=0).tolist()
    box = _half_space_box(bounds, lattice.device).to(torch.float64)  # (M, 3)
    if box.shape[0] == 0:
        box = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64, device=lattice.device)
    reciprocal = torch.linalg.inv(reduced).transpose(-1, -2)  # (B, 3, 3) rows b'_i
    g2 = (torch.matmul(box, reciprocal) ** 2).sum(-1)  # (B, M)
    keep = g2 <= g_max**2
    position = torch.cumsum(keep, dim=1) - 1  # (B, M): slot of each kept reflection
    k_max = max(int(position[:, -1].max()) + 1, 1)
    crystal, column = torch.nonzero(keep, as_tuple=True)
    back = torch.linalg.inv(transform.to(torch.float64)).transpose(-1, -2)  # U⁻ᵀ, integer
    original = torch.matmul(box[column][:, None, :], back[crystal])[:, 0].round().to(torch.int64)
    hkl = torch.zeros(lattice.shape[0], k_max, 3, dtype=torch.int64, device=lattice.device)
    hkl[..., 0] = 1  # padding: (100), masked by ``valid``
    valid = torch.zeros(lattice.shape[0], k_max, dtype=torch.bool, device=lattice.device)
    slot = position[crystal, column]
    hkl[crystal, slot] = original
    valid[crystal, slot] = True
    return hkl, valid


# ---------------------------------------------------------------------------- the forward model
def _pad_sites(frac: torch.Tensor, numbers: torch.Tensor, num_atoms: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Sites per crystal, padded to the largest crystal, with each crystal's distinct elements.

    Returns:
        ``frac`` (B, Nmax, 3) (padding repeats site 0), ``species`` (B, Nmax) int64 index of each
        site's element among its crystal's distinct elements (padding: an element of Z = 0),
        ``elements`` (B, S) int64 atomic numbers of those elements (0 = none), ``S`` the most
        distinct elements (padding counted) of any crystal.
    """
    device = frac.device
    counts = num_atoms.to(device=device, dtype=torch.int64)
    slots = torch.arange(int(counts.max()), device=device)
    mask = slots[None, :] < counts[:, None]
    index = torch.where(mask, (torch.cumsum(counts, 0) - counts)[:, None] + slots[None, :], 0)
    z = torch.where(mask, numbers.to(device, torch.int64)[index], 0)  # (B, Nmax), 0 = padding
    ordered, order = torch.sort(z, dim=1)
    first = torch.ones_like(ordered, dtype=torch.bool)
    first[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    rank = torch.cumsum(first, dim=1) - 1  # distinct-element index of each sorted site
    species = torch.empty_like(rank).scatter_(1, order, rank)
    elements = torch.zeros(z.shape[0], int(rank.max()) + 1, dtype=torch.int64, device=device)
    elements.scatter_(1, rank, ordered)  # equal ranks carry equal Z
    return frac[index], species, elements


def _intensities(
    lattice: torch.Tensor,
    frac: torch.Tensor,
    numbers: torch.Tensor,
    num_atoms: torch.Tensor,
    hkl: torch.Tensor,
    valid: torch.Tensor,
    wavelength: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Peak positions (B, K) degrees 2θ and intensities ``2|F|²·LP`` (B, K), zero where not valid.

    ``F = Σₑ fₑ(s) Σ_{j ∈ e} exp(2πi hkl·rⱼ)``: the phase sums are grouped by element with one
    batched product against a (B, Nmax, S) one-hot, so scattering factors are evaluated per
    element (B, K, S), not per site.
    """
    dtype = lattice.dtype
    reciprocal = torch.linalg.inv(lattice).transpose(-1, -2)
    hkl_f = hkl.to(dtype)
    g_vectors = torch.matmul(hkl_f, reciprocal)  # (B, K, 3) Å⁻¹
    g2 = torch.where(valid, (g_vectors**2).sum(-1), torch.ones_like(valid, dtype=dtype))
    sin_theta = (0.5 * wavelength * torch.sqrt(g2)).clamp(max=_MAX_SIN_THETA)
    two_theta = torch.rad2deg(2.0 * torch.asin(sin_theta))
    s2 = 0.25 * g2  # (sin θ / λ)², Å⁻²

    frac_pad, species, elements = _pad_sites(frac, numbers, num_atoms)
    one_hot = (species[..., None] == torch.arange(elements.shape[1], device=species.device)).to(dtype)
    phase = (2.0 * math.pi) * torch.matmul(hkl_f, frac_pad.transpose(-1, -2))  # (B, K, Nmax)
    cos_sum = torch.matmul(torch.cos(phase), one_hot)  # (B, K, S)
    sin_sum = torch.matmul(torch.sin(phase), one_hot)
    table = torch.as_tensor(_coefficient_table()[0], dtype=dtype, device=lattice.device)[elements]  # (B, S, 4, 2)
    a, b = table[..., 0].flatten(1)[:, None], table[..., 1].flatten(1)[:, None]  # (B, 1, 4S)
    decay = (a * torch.exp(-b * s2[..., None])).unflatten(-1, (-1, 4)).sum(-1)  # (B, K, S)
    form = elements.to(dtype)[:, None, :] - _FORM_FACTOR_PREFACTOR * s2[..., None] * decay  # Z = 0: f = 0
    real = (form * cos_sum).sum(-1)
    imag = (form * sin_sum).sum(-1)

    cos_theta = torch.sqrt(1.0 - sin_theta**2)
    cos_two_theta = 1.0 - 2.0 * sin_theta**2
    lorentz_polarisation = (1.0 + cos_two_theta**2) / (sin_theta**2 * cos_theta)
    intensity = 2.0 * (real**2 + imag**2) * lorentz_polarisation
    return two_theta, torch.where(valid, intensity, torch.zeros_like(intensity))


def lorentzian_in_window(delta: np.ndarray) -> np.ndarray:
    """The Lorentzian part of the drawn profile at ``delta`` FWHMs from the peak (height ≈ 1).

    ``L(Δ) − L(w) − L'(w²)(Δ² − w²)`` inside ``|Δ| ≤ w``, 0 outside, with ``L(Δ) = 1/(1 + 4Δ²)``
    written as a function of ``Δ²`` and ``w`` = :data:`PROFILE_HALF_WIDTH_FWHM`: the tangent in
    ``Δ²`` at the edge is subtracted, so the profile meets zero there with zero slope (a smooth
    window whose tabulation converges fast). It lies below ``L`` by at most ``8w²/(1 + 4w²)² +
    L(w)`` (1.25e-3 at w = 20).
    """
    w2 = PROFILE_HALF_WIDTH_FWHM**2
    squared = np.asarray(delta, dtype=np.float64) ** 2
    tangent = 1.0 / (1.0 + 4.0 * w2) - 4.0 / (1.0 + 4.0 * w2) ** 2 * (squared - w2)
    return np.where(squared <= w2, 1.0 / (1.0 + 4.0 * squared) - tangent, 0.0)


@cache
def _kernel_table(step: float, fwhm: float, eta: float) -> tuple[np.ndarray, int]:
    """Chebyshev coefficients (M, W) of the windowed profile as a function of the sub-step shift.

    The value at grid offset ``j`` (−reach..reach) from a peak's nearest grid point is
    ``k(j·step/fwhm + u)`` with the shift ``u ∈ [−h, h]``, ``h = step / 2fwhm`` (FWHMs), and
    ``k(Δ) = η L_w(Δ) + (1 − η) G(Δ)`` with ``L_w`` from :func:`lorentzian_in_window`.
    Each column is interpolated at ``M`` Chebyshev nodes in ``u``. ``k`` is analytic in ``u``
    except for the Lorentzian's poles ½ FWHM off the real axis, so the interpolation error falls
    by ``ρ = a + √(a² + 1)``, ``a = 1/(2h)``, per degree; ``M`` is the degree reaching 1e-8
    (12 at the default grid, where ``h`` = 1/6 FWHM), at most 64.

    Returns:
        ``(coefficients (M, W), reach)`` with ``W = 2·reach + 1``.
    """
    reach = math.ceil(PROFILE_HALF_WIDTH_FWHM * fwhm / step) + 1  # nearest point ± reach covers ±w
    half_step = 0.5 * step / fwhm
    ratio = 0.5 / half_step
    degree = min(max(math.ceil(8.0 * math.log(10.0) / math.log(ratio + math.hypot(ratio, 1.0))) + 1, 4), 64)
    nodes = np.cos(np.pi * (np.arange(degree) + 0.5) / degree)  # (M,)
    delta = np.arange(-reach, reach + 1)[None, :] * (step / fwhm) + half_step * nodes[:, None]  # (M, W)
    values = eta * lorentzian_in_window(delta) + (1.0 - eta) * np.exp(-4.0 * np.log(2.0) * delta**2)
    basis = np.cos(np.arange(degree)[:, None] * np.arccos(nodes)[None, :])  # (M, nodes)
    coefficients = (2.0 / degree) * basis @ values
    coefficients[0] *= 0.5
    return coefficients, reach


def _chebyshev_basis(x: torch.Tensor, degree: int) -> torch.Tensor:
    """(..., degree) Chebyshev polynomials T_0..T_{degree−1} at ``x`` (by the three-term recurrence)."""
    terms = [torch.ones_like(x), x]
    for _ in range(degree - 2):
        terms.append(2.0 * x * terms[-1] - terms[-2])
    return torch.stack(terms[:degree], dim=-1)


def _broaden(two_theta: torch.Tensor, intensity: torch.Tensor, grid: PatternGrid) -> torch.Tensor:
    """(B, P) sum of pseudo-Voigt peaks at ``two_theta`` (B, K) degrees with heights ``intensity`` (B, K).

    Each peak's window values are ``(intensity · T(u/h)) @ C``: the Chebyshev basis of its
    sub-step shift (B, K, M) times the cached coefficient table (M, W) of :func:`_kernel_table`,
    one matrix product instead of a chain of elementwise passes over (B, K, W). The windows are
    summed into the grid padded by ``2·reach + 1`` each side, with the anchor point clamped so a
    peak whose window misses the grid lands wholly in the padding, which is cut off.
    """
    step, start, fwhm = grid.step, grid.two_theta_min, grid.fwhm
    table, reach = _kernel_table(step, fwhm, grid.eta)
    coefficients = torch.as_tensor(table, dtype=two_theta.dtype, device=two_theta.device)  # (M, W)
    nearest = torch.round((two_theta.detach() - start) / step).to(torch.int64)  # (B, K)
    shift = (start + nearest.to(two_theta.dtype) * step - two_theta) * (2.0 / step)  # u / h ∈ [−1, 1]
    weights = _chebyshev_basis(shift, table.shape[0]) * intensity[..., None]  # (B, K, M)
    values = torch.matmul(weights, coefficients)  # (B, K, W)

    n_crystals, n_points = two_theta.shape[0], grid.n_points
    pad = 2 * reach + 1
    anchor = nearest.clamp(-reach - 1, n_points + reach) + pad  # (B, K), ≥ reach
    index = anchor[..., None] + torch.arange(-reach, reach + 1, device=two_theta.device)
    padded = two_theta.new_zeros(n_crystals, n_points + 2 * pad)
    padded = padded.scatter_add(1, index.reshape(n_crystals, -1), values.reshape(n_crystals, -1))
    return padded[:, pad : pad + n_points]


def powder_pattern(
    lattice: torch.Tensor,
    frac: torch.Tensor,
    numbers: torch.Tensor,
    num_atoms: torch.Tensor,
    grid: PatternGrid = DEFAULT_GRID,
    *,
    max_index: int | None = None,
) -> torch.Tensor:
    """(B, P) broadened powder patterns, each scaled to max 1, differentiable in ``lattice`` and ``frac``.

    Args:
        lattice: (B, 3, 3) lattice vectors as rows, Å; float32 or float64 (sets the output dtype).
        frac: (N, 3) fractional coordinates (any real values: the pattern is periodic in them),
            same dtype and device as ``lattice``.
        numbers: (N,) integer atomic numbers, 1..98.
        num_atoms: (B,) integer sites per crystal (each ≥ 1, summing to N); the sites of crystal
            ``b`` are rows ``sum(num_atoms[:b])`` onwards of ``frac`` and ``numbers``.
        grid: 2θ grid, wavelength and profile (:data:`~crystaloop.data.xrd_grid.DEFAULT_GRID`).
        max_index: cap on ``|h|, |k|, |l|``; ``None`` means :data:`DEFAULT_MAX_INDEX`.

    Returns:
        (B, grid.n_points) patterns on ``grid.two_theta()``, max 1 each (all zero when no
        reflection reaches the grid), dtype of ``lattice``, on its device.

    Raises:
        InvalidStructureError: malformed shapes or dtypes, ``num_atoms`` not summing to N, an
            atomic number without scattering factors, a non-finite input or a cell volume below
            :data:`MIN_VOLUME`, a non-positive ``max_index``.
    """
    max_index = DEFAULT_MAX_INDEX if max_index is None else max_index
    _check_inputs(lattice, frac, numbers, num_atoms, max_index)
    high = min(grid.two_theta_max + profile_half_width(grid), 179.9)
    g_max = 2.0 * math.sin(math.radians(high / 2.0)) / grid.wavelength  # Å⁻¹
    hkl, valid = _reflections(lattice, g_max, max_index)
    two_theta, intensity = _intensities(lattice, frac, numbers, num_atoms, hkl, valid, grid.wavelength)
    pattern = _broaden(two_theta, intensity, grid)
    top = pattern.amax(dim=-1, keepdim=True)
    return pattern / top.clamp(min=torch.finfo(pattern.dtype).tiny)


def powder_pattern_of(crystal: Crystal, grid: PatternGrid = DEFAULT_GRID) -> np.ndarray:
    """(P,) float32 pattern of one :class:`Crystal` (computed in float64 on CPU, no gradient)."""
    with torch.no_grad():
        pattern = powder_pattern(
            torch.tensor(crystal.lattice)[None],
            torch.tensor(crystal.frac_coords),
            torch.tensor(crystal.numbers, dtype=torch.int64),
            torch.tensor([crystal.n_sites]),
            grid,
        )
    return pattern[0].numpy().astype(np.float32)


# ---------------------------------------------------------------------------- comparing patterns
def _pair(a: torch.Tensor, b: torch.Tensor, weights: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """Broadcast patterns (B, P) or (P,) (and weights) to a common (B, P); refuse mismatched grids."""
    tensors = [a, b] if weights is None else [a, b, weights]
    for name, tensor in zip(("simulated", "measured", "weights"), tensors, strict=False):
        if not isinstance(tensor, torch.Tensor) or tensor.ndim not in (1, 2):
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise InvalidStructureError(f"{name} must be a (B, P) or (P,) tensor, got {shape}")
    try:
        out = torch.broadcast_tensors(*[t if t.ndim == 2 else t[None] for t in tensors])
    except RuntimeError as exc:
        shapes = ", ".join(str(tuple(t.shape)) for t in tensors)
        raise InvalidStructureError(f"patterns must share the grid (same P) and batch size; got {shapes}") from exc
    return out


def cosine_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B,) cosine of the angle between patterns ``a`` and ``b`` ((B, P) or (P,), broadcast); 0 for an empty one."""
    a, b = _pair(a, b)
    tiny = torch.finfo(a.dtype).tiny
    norms = torch.sqrt((a**2).sum(-1).clamp(min=tiny)) * torch.sqrt((b**2).sum(-1).clamp(min=tiny))
    return (a * b).sum(-1) / norms


def rwp(simulated: torch.Tensor, measured: torch.Tensor, *, weights: torch.Tensor | None = None) -> torch.Tensor:
    """(B,) weighted-profile R factor of ``measured`` by ``c · simulated`` at the best scale ``c``.

    ``Rwp = sqrt(Σ w (y − c s)² / Σ w y²)`` with ``c = Σ w y s / Σ w s²`` (the least-squares scale,
    in closed form), ``y`` measured and ``s`` simulated intensities. It is 0 for a perfect fit
    (at any positive scale of the simulation) and 1 when the simulation explains nothing of the
    measurement (orthogonal, or empty). Not symmetric: the measurement sets the normalisation.

    Args:
        simulated, measured: (B, P) or (P,) patterns on one grid (broadcast against each other).
        weights: (B, P) or (P,) non-negative point weights ``w = 1/σ²``; ``None`` weighs all
            points equally (the right choice for patterns scaled to max 1, whose counts are
            unknown). For raw counts pass ``1 / max(counts, 1)``.
    """
    simulated, measured, *rest = _pair(simulated, measured, weights)
    w = rest[0] if rest else torch.ones_like(measured)
    tiny = torch.finfo(measured.dtype).tiny
    scale = (w * measured * simulated).sum(-1) / (w * simulated**2).sum(-1).clamp(min=tiny)
    residual = (w * (measured - scale[:, None] * simulated) ** 2).sum(-1)
    ratio = residual / (w * measured**2).sum(-1).clamp(min=tiny)
    return torch.sqrt(torch.where(ratio > tiny, ratio, torch.full_like(ratio, tiny)))


def pattern_misfit(
    simulated: torch.Tensor, measured: torch.Tensor, *, kind: Literal["rwp", "cosine"] = "rwp"
) -> torch.Tensor:
    """(B,) loss of simulated against measured patterns: :func:`rwp` (default) or ``1 − cosine``.

    Both are blind to the overall scale; ``1 − cos`` is about ``Rwp² / 2`` near a good fit, so
    ``rwp`` keeps a useful gradient size there while ``cosine`` is smoother far from it.
    """
    if kind == "rwp":
        return rwp(simulated, measured)
    if kind == "cosine":
        return 1.0 - cosine_similarity(simulated, measured)
    raise UnknownComponentError("pattern misfit", kind, ("rwp", "cosine"))
