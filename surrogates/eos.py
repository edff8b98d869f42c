"""Bulk modulus from an equation-of-state fit over isotropically strained cells.

:func:`bulk_modulus` (optionally) relaxes the crystal with the oracle, scales its lattice by
``1 + s`` for each linear strain ``s`` (fractional coordinates fixed, so volumes scale by
``(1 + s)³``), takes the oracle's single-point energies and fits ASE's
:class:`ase.eos.EquationOfState`. The result is a Measurement of property ``"bulk_modulus"`` in
GPa; a failed relaxation, a failed single point or a fit that has no minimum inside the sampled
volumes gives a failed Measurement with the reason. Results go through the oracle's cache under
a property key that covers the strains, the EOS form and ``relax_first``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from crystaloop.data.crystal import Crystal
from crystaloop.data.records import Measurement
from crystaloop.surrogates.oracles.base import ASEOracle
from crystaloop.surrogates.oracles.cache import CachedResult

__all__ = ["DEFAULT_STRAINS", "EOSForm", "bulk_modulus", "eos_property_key"]

logger = logging.getLogger(__name__)

DEFAULT_STRAINS: tuple[float, ...] = (-0.04, -0.0266667, -0.0133333, 0.0, 0.0133333, 0.0266667, 0.04)
"""Seven linear strains from −4 % to +4 % (volumes from −11.5 % to +12.5 %)."""

EOSForm = Literal["birchmurnaghan", "birch", "murnaghan", "vinet", "pouriertarantola", "sj", "taylor", "p3"]
UNITS = "GPa"
PROPERTY = "bulk_modulus"


def eos_property_key(strains: Sequence[float], eos: str, relax_first: bool) -> str:
    """Cache property key ``"bulk_modulus:<16 hex>"`` covering the fit settings."""
    payload = {"strains": [round(float(s), 6) for s in strains], "eos": eos, "relax_first": relax_first}
    return f"{PROPERTY}:{hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]}"


def bulk_modulus(
    crystal: Crystal,
    oracle: ASEOracle,
    *,
    strains: Sequence[float] = DEFAULT_STRAINS,
    eos: EOSForm = "birchmurnaghan",
    relax_first: bool = True,
) -> Measurement:
    """Bulk modulus B₀ (GPa) of ``crystal`` from ``oracle`` energies; see the module docstring.

    Args:
        crystal: the structure; relaxed by the oracle first when ``relax_first``.
        oracle: gives the energies (and the relaxation, and the cache).
        strains: linear strains of the lattice (dimensionless), at least 5 distinct values > −1,
            spanning zero so the minimum lies inside.
        eos: an ASE equation-of-state form.
        relax_first: relax (cell and positions, with the oracle's settings) before straining.

    Raises:
        ValueError: ``strains`` has fewer than 5 distinct values or one ≤ −1.
    """
    strains = tuple(float(s) for s in strains)
    if len(set(strains)) < 5 or min(strains) <= -1.0:
        raise ValueError(f"strains need at least 5 distinct values, all > -1; got {list(strains)}")
    prop = eos_property_key(strains, eos, relax_first)
    key = oracle.cache_key()
    structure_hash = crystal.canonical_hash()
    if oracle.cache is not None and (hit := oracle.cache.get(key, structure_hash, prop)) is not None:
        return _measurement(oracle.name, hit.value, hit.status, hit.reason)

    value, reason, base, details = _fit(crystal, oracle, strains, eos, relax_first)
    status: Literal["ok", "failed"] = "ok" if value is not None else "failed"
    if status == "failed":
        logger.info("bulk modulus of %s with %s failed: %s", crystal.reduced_formula, oracle.name, reason)
    if oracle.cache is not None:
        result = CachedResult(status, reason, value, UNITS, crystal.composition, base if relax_first else None, details)
        oracle.cache.put(key, structure_hash, prop, result)
    return _measurement(oracle.name, value, status, reason)


def _fit(
    crystal: Crystal, oracle: ASEOracle, strains: tuple[float, ...], eos: str, relax_first: bool
) -> tuple[float | None, str, Crystal | None, dict[str, Any]]:
    base = crystal
    if relax_first:
        relaxation = oracle.relax([crystal])[0]
        if relaxation.status != "ok" or relaxation.final is None:  # an unconverged cell is no equilibrium
            return None, f"relaxation {relaxation.status}: {relaxation.reason}", None, {}
        base = relaxation.final
    scaled = [Crystal(base.lattice * (1.0 + s), base.frac_coords, base.numbers) for s in strains]
    points = oracle.single_point(scaled, use_cache=False)
    for strain, point in zip(strains, points, strict=True):
        if point.status != "ok" or point.value is None:
            return None, f"single point at strain {strain:+.4f} failed: {point.reason}", base, {}
    volumes = np.array([c.volume for c in scaled])
    energies = np.array([p.value * base.n_sites for p in points])
    details: dict[str, Any] = {"volumes_A3": volumes.tolist(), "energies_eV": energies.tolist(), "eos": eos}

    from ase.eos import EquationOfState
    from ase.units import GPa

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            v0, e0, b = EquationOfState(volumes, energies, eos=eos).fit(warn=False)
    except Exception as exc:  # scipy's curve_fit raises RuntimeError/ValueError/LinAlgError on bad data
        return None, f"EOS fit failed: {type(exc).__name__}: {exc}", base, details
    v0, e0, b = float(v0), float(e0), float(b)
    details.update({"v0_A3": v0, "e0_eV": e0})
    if not (math.isfinite(v0) and math.isfinite(b)):
        return None, f"EOS fit gave non-finite values (V0={v0}, B={b})", base, details
    if not volumes.min() <= v0 <= volumes.max():
        return (
            None,
            (
                f"EOS minimum at V0={v0:.4g} Å³ lies outside the sampled volumes "
                f"{volumes.min():.4g}..{volumes.max():.4g} Å³; relax first or widen the strains"
            ),
            base,
            details,
        )
    if b <= 0:
        return None, f"EOS fit gave a non-positive bulk modulus ({b / GPa:.4g} GPa)", base, details
    return b / GPa, "", base, details


def _measurement(oracle: str, value: float | None, status: str, reason: str) -> Measurement:
    ok = status == "ok"
    return Measurement(
        oracle=oracle,
        property=PROPERTY,
        value=value if ok else None,
        units=UNITS,
        status="ok" if ok else "failed",
        reason=reason,
    )
