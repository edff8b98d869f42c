"""The one StructureMatcher definition: CSP tolerances, copies match, bad tolerances named."""

from __future__ import annotations

import numpy as np
import pytest

from crystaloop.data.matching import structure_matcher
from crystaloop.data.store.testing import rock_salt
from crystaloop.data.testing import random_rotation, random_translation


def test_csp_tolerances_and_a_moved_copy_matches():
    matcher = structure_matcher()
    assert (matcher.stol, matcher.ltol, matcher.angle_tol) == (0.5, 0.3, 10.0)
    rng = np.random.default_rng(0)
    crystal = rock_salt(5.64)
    copy = random_rotation(random_translation(crystal, rng), rng)
    assert matcher.get_rms_dist(crystal.to_pymatgen(), copy.to_pymatgen()) is not None
    assert matcher.get_rms_dist(crystal.to_pymatgen(), rock_salt(5.64, "K", "Cl").to_pymatgen()) is None


def test_bad_tolerance_is_named():
    with pytest.raises(ValueError, match="stol must be > 0, got -0.1"):
        structure_matcher(stol=-0.1)


def test_named_presets_and_overrides():
    from crystaloop.data.errors import UnknownComponentError
    from crystaloop.data.matching import CSP, MATCHER_PRESETS, SAME_STRUCTURE

    assert set(MATCHER_PRESETS) == {"csp", "same_structure"}
    assert (CSP.stol, CSP.ltol, CSP.angle_tol) == (0.5, 0.3, 10.0)
    same = structure_matcher("same_structure")
    assert (same.stol, same.ltol, same.angle_tol) == (SAME_STRUCTURE.stol, SAME_STRUCTURE.ltol, SAME_STRUCTURE.angle_tol)
    loose = structure_matcher("same_structure", stol=0.8)
    assert (loose.stol, loose.ltol) == (0.8, SAME_STRUCTURE.ltol)
    with pytest.raises(UnknownComponentError, match="unknown matcher preset 'cps'; allowed: csp, same_structure"):
        structure_matcher("cps")
