"""The project's one structure matcher: pymatgen's ``StructureMatcher`` with the CSP protocol's
tolerances (DESIGN.md, "Reference protocols"): site tolerance ``stol=0.5`` (fraction of the
average free length per atom, (V/N)^(1/3)), lattice length tolerance ``ltol=0.3`` (fraction) and
angle tolerance ``angle_tol=10`` degrees; primitive cells and volume scaling on (pymatgen's
defaults). A match is ``get_rms_dist`` returning a value. Everything that compares structures
builds its matcher here (the loop's novelty index, the generator's CSP metrics, the benchmarks).
"""

from __future__ import annotations

from typing import Any

__all__ = ["CSP_STOL", "CSP_LTOL", "CSP_ANGLE_TOL", "structure_matcher"]

CSP_STOL = 0.5
CSP_LTOL = 0.3
CSP_ANGLE_TOL = 10.0  # degrees


def structure_matcher(*, stol: float = CSP_STOL, ltol: float = CSP_LTOL, angle_tol: float = CSP_ANGLE_TOL) -> Any:
    """A pymatgen ``StructureMatcher`` (imported on first use), the CSP protocol's tolerances by default.

    Raises:
        ValueError: a tolerance is not positive (the message names it and its value).
    """
    from pymatgen.analysis.structure_matcher import StructureMatcher

    for name, value in (("stol", stol), ("ltol", ltol), ("angle_tol", angle_tol)):
        if not value > 0:
            raise ValueError(f"StructureMatcher tolerance {name} must be > 0, got {value}")
    return StructureMatcher(stol=stol, ltol=ltol, angle_tol=angle_tol)
