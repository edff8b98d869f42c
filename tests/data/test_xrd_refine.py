"""Refinement against a powder pattern: a strained, jittered copy returns to the measured cell."""

from __future__ import annotations

import numpy as np
import pytest

from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets import load_dataset
from crystaloop.data.errors import CrystaloopError
from crystaloop.data.xrd_forward import powder_pattern_of
from crystaloop.data.xrd_refine import RefineConfig, refine_to_pattern


@pytest.fixture(scope="module")
def perovskite() -> Crystal:
    return load_dataset("perov_5/val", max_rows=4).crystals[3]


def test_refinement_recovers_a_strained_cell_and_never_worsens_the_fit(perovskite: Crystal) -> None:
    rng = np.random.default_rng(0)
    starts = [Crystal(lattice=perovskite.lattice * (1 + strain), numbers=perovskite.numbers,
                      frac_coords=perovskite.frac_coords + rng.normal(0, 0.01, perovskite.frac_coords.shape))
              for strain in (0.02, -0.04)]
    result = refine_to_pattern(starts, powder_pattern_of(perovskite), config=RefineConfig(iterations=25))
    assert np.all(result.rwp_before > 0.9)  # peaks 0.5–2° off: nothing overlaps at the grid's profile
    assert np.all(result.rwp_after < 0.5) and np.all(result.rwp_after <= result.rwp_before)
    for refined in result.crystals:
        lengths, target = np.linalg.norm(refined.lattice, axis=1), np.linalg.norm(perovskite.lattice, axis=1)
        np.testing.assert_allclose(np.sort(lengths), np.sort(target), rtol=0.005)
        assert refined.composition == perovskite.composition


def test_refinement_refuses_patterns_off_the_grid(perovskite: Crystal) -> None:
    with pytest.raises(CrystaloopError, match=r"\(1701,\)"):
        refine_to_pattern([perovskite], np.ones(100))
    with pytest.raises(CrystaloopError, match="at least one"):
        refine_to_pattern([], powder_pattern_of(perovskite))
    with pytest.raises(ValueError, match="extra"):
        RefineConfig.model_validate({"iterations": 3, "learning_rate": 0.1})
