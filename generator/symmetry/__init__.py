"""Symmetry-aware crystals: space group + Wyckoff orbits (representation), a template prior
learned from a training split, and the template generator built on both (issue #17)."""

from crystaloop.generator.symmetry.representation import (
    DEFAULT_SYMPREC,
    LATTICE_PARAMETERS,
    SYMPREC_LADDER,
    Orbit,
    SymmetricCrystal,
    Template,
    describe,
    from_structure,
)

__all__ = ["DEFAULT_SYMPREC", "LATTICE_PARAMETERS", "SYMPREC_LADDER", "Orbit", "SymmetricCrystal", "Template",
           "describe", "from_structure"]
