"""csp_metrics and dng_metrics on hand-made cases: a known match, a known miss, invalid samples."""

from __future__ import annotations

import numpy as np
import pytest

from crystaloop.data.crystal import Crystal
from crystaloop.data.errors import UnknownComponentError
from crystaloop.data.store.testing import perovskite, rock_salt
from crystaloop.data.testing import random_rotation, random_translation
from crystaloop.generator.evaluation import coverage_cutoffs, csp_metrics, csp_metrics_at_k, dng_metrics


def _moved(crystal: Crystal, seed: int) -> Crystal:
    rng = np.random.default_rng(seed)
    return random_rotation(random_translation(crystal, rng), rng)


def _overlapping() -> Crystal:
    """Rock salt with a third atom 0.2 Å from the Na: structurally invalid under the protocol."""
    return Crystal.from_symbols(np.eye(3) * 5.64, [[0, 0, 0], [0.5, 0.5, 0.5], [0.2 / 5.64, 0, 0]], ["Na", "Cl", "Cl"])


def test_csp_match_miss_and_invalid_samples() -> None:
    salt, perov = rock_salt(5.64), perovskite()
    # a rotated, translated copy matches with ~zero rms; a jiggled one with a small positive rms
    exact = csp_metrics([salt], [_moved(salt, 0)])
    assert exact["n"] == 1 and exact["match_rate"] == 100.0 and exact["fit_rate"] == 100.0
    assert exact["rmse"] == pytest.approx(0.0, abs=1e-6)
    jiggled = perov.frac_coords + np.array([[0.02, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]])
    moved_perov = Crystal(lattice=perov.lattice, frac_coords=jiggled, numbers=perov.numbers)
    near = csp_metrics([perov], [moved_perov])
    assert near["match_rate"] == 100.0 and 0.0 < near["rmse"] < 0.1
    # a different structure is a miss: no rmse
    miss = csp_metrics([salt], [perov])
    assert (miss["match_rate"], miss["fit_rate"], miss["rmse"]) == (0.0, 0.0, None)
    # mixed: match, miss, structurally invalid sample, failed sample (None); all count in n
    mixed = csp_metrics([salt, salt, salt, perov, perov], [_moved(salt, 1), perov, _overlapping(), None, moved_perov])
    assert mixed["n"] == 5 and mixed["invalid_samples"] == 1
    assert mixed["match_rate"] == pytest.approx(40.0)
    assert mixed["rmse"] == pytest.approx(np.mean([0.0, near["rmse"]]), abs=1e-6)
    assert csp_metrics([], [])["match_rate"] == 0.0


def test_csp_at_k_counts_a_reference_once_when_any_candidate_matches() -> None:
    salt, perov = rock_salt(5.64), perovskite()
    # salt: the second candidate matches; perov: no candidate matches; third: only failed samples
    result = csp_metrics_at_k([salt, perov, salt], [[perov, _moved(salt, 2), _moved(salt, 3)], [salt, salt], [None, _overlapping()]])
    assert result["n"] == 3 and result["k"] == 3
    assert result["match_rate"] == pytest.approx(100.0 / 3) and result["fit_rate"] == pytest.approx(100.0 / 3)
    single = csp_metrics_at_k([salt], [[_moved(salt, 4)]])
    assert single["match_rate"] == csp_metrics([salt], [_moved(salt, 4)])["match_rate"] == 100.0
    assert csp_metrics_at_k([], [])["match_rate"] == 0.0


def test_dng_validity_fractions() -> None:
    salt, perov = rock_salt(5.64), perovskite()
    nacl2 = Crystal.from_symbols(np.eye(3) * 4.5, [[0, 0, 0], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]], ["Na", "Cl", "Cl"])
    samples = [salt, perov, _overlapping(), nacl2, None]
    metrics = dng_metrics(samples, [salt, perov], dataset="perov_5/val", coverage_limit=0)
    assert metrics["n"] == 5
    # structural: salt, perov, nacl2 pass (3/5); compositional: salt, perov pass, NaCl2 (twice) fails (2/5)
    assert metrics["structural_validity"] == pytest.approx(60.0)
    assert metrics["compositional_validity"] == pytest.approx(40.0)
    assert metrics["valid"] == pytest.approx(40.0)
    assert metrics["wasserstein_num_elements"] == pytest.approx(0.0)
    assert metrics["smact_version"]
    assert "cov_recall" not in metrics  # coverage off


def test_coverage_cutoffs_come_from_the_card_and_typos_raise(tmp_path) -> None:  # noqa: ANN001
    cutoffs, basis = coverage_cutoffs("perov_5/val")
    assert (cutoffs.structure, cutoffs.composition, basis) == (0.2, 4.0, "perov_5 card")
    assert coverage_cutoffs("mp_20/test")[0].composition == 10.0
    own = tmp_path / "mine.csv"
    own.write_text("")
    cutoffs, basis = coverage_cutoffs(str(own))
    assert cutoffs.structure == 0.4 and "no card" in basis
    with pytest.raises(UnknownComponentError, match="allowed: carbon_24, mp_20, perov_5"):
        coverage_cutoffs("perov5/val")
