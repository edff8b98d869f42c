"""Checks on solve-xrd's answer: modes group equal structures, and each flag fires on the case it names and not on a clean one."""

from __future__ import annotations

import numpy as np
import pytest

from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets import load_dataset
from crystaloop.data.errors import CrystaloopError
from crystaloop.data.testing import random_rotation
from crystaloop.generator.posterior.solution_checks import FLAGS, SolutionCheckConfig, check_solutions, group_modes
from crystaloop.generator.posterior.xrd import XRDSolution


@pytest.fixture(scope="module")
def cells() -> list[Crystal]:
    crystals = load_dataset("perov_5/val", max_rows=40).crystals
    first = crystals[0]
    others = [c for c in crystals[1:] if c.composition == first.composition]
    return [first, *others]


def _solution(crystal: Crystal, rwp: float) -> XRDSolution:
    return XRDSolution(crystal=crystal, rwp=rwp, kl=10.0, simulated=np.zeros(4), seed=0)


def _distorted(crystal: Crystal, strain: float) -> Crystal:
    return Crystal(lattice=crystal.lattice * np.array([1.0 + strain, 1.0, 1.0 - strain])[:, None], frac_coords=crystal.frac_coords,
                   numbers=crystal.numbers)


def test_modes_group_a_structure_with_its_rotated_copy_and_split_a_different_one(cells: list[Crystal]) -> None:
    base = cells[0]
    rotated = random_rotation(base, np.random.default_rng(0))
    other = _distorted(base, 0.6)  # a 60 % strain is no longer the same structure
    from crystaloop.data.matching import structure_matcher

    modes = group_modes([_solution(base, 0.1), _solution(rotated, 0.12), _solution(other, 0.3)], structure_matcher("same_structure"))
    assert [m.members for m in modes] == [(0, 1), (2,)]
    assert modes[0].weight == pytest.approx(2 / 3) and modes[0].rwp == 0.1


def test_a_clean_answer_raises_no_flag_and_each_bad_case_raises_its_own(cells: list[Crystal]) -> None:
    base, other = cells[0], _distorted(cells[0], 0.6)
    kl = np.full(4, 50.0)
    clean = check_solutions([_solution(base, 0.10)] * 3 + [_solution(other, 0.40)], kl, early=[_solution(base, 0.11)])
    assert clean.trusted and clean.support == 3 and clean.early_agrees is True

    poor = check_solutions([_solution(base, 0.60)] * 3, kl)
    assert "poor_fit" in poor.flags
    tie = check_solutions([_solution(base, 0.10)] * 2 + [_solution(other, 0.103)] * 2, kl)
    assert "ambiguous" in tie.flags and tie.runner_up_gap == pytest.approx(0.003)
    lonely = check_solutions([_solution(base, 0.10), _solution(other, 0.2)], kl)
    assert "weak_support" in lonely.flags
    ruled_out = check_solutions([_solution(base, 0.10)] + [_solution(other, 0.4)] * 7, kl, config=SolutionCheckConfig(min_support=None))
    assert ruled_out.flags == ("hallucinated",) and ruled_out.hallucination_rate == pytest.approx(7 / 8)
    unstable = check_solutions([_solution(base, 0.10)] * 3, kl, early=[_solution(other, 0.12)])
    assert unstable.flags == ("early_disagrees",) and unstable.early_agrees is False
    prior_like = check_solutions([_solution(base, 0.10)] * 3, np.zeros(3), config=SolutionCheckConfig(min_kl=1.0))
    assert prior_like.flags == ("out_of_domain",)
    assert set(FLAGS) >= {f for checks in (poor, tie, lonely, ruled_out, unstable, prior_like) for f in checks.flags}


def test_checks_refuse_an_empty_answer_and_unknown_settings() -> None:
    with pytest.raises(CrystaloopError, match="every chain collapsed"):
        check_solutions([], np.zeros(0))
    with pytest.raises(ValueError, match="extra"):
        SolutionCheckConfig.model_validate({"max_rwp": 0.3, "max_rpw": 0.2})
