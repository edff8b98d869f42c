"""generator.csp: the CSP evaluation core (k=1 and k, the two no-learning baselines) on a few perov_5 rows."""

from __future__ import annotations

import math

import pytest

from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets import load_dataset
from crystaloop.data.errors import CrystaloopError
from crystaloop.data.records import Candidate, Condition, Provenance
from crystaloop.generator.csp import SameSizeGenerator, evaluate_arm, from_generator, template_rule


def _reduced(composition: dict[str, int]) -> tuple:
    g = math.gcd(*composition.values())
    return tuple(sorted((el, n // g) for el, n in composition.items()))


class TruthGenerator:
    """Answers every composition with the test structure of that composition (the perfect predictor)."""

    name = "truth"

    def __init__(self, crystals: list[Crystal]) -> None:
        self.by_composition = {_reduced(c.composition): c for c in crystals}

    def sample(self, n: int, condition: Condition | None = None, *, seed: int) -> list[Candidate]:
        assert condition is not None and condition.composition is not None
        crystal = self.by_composition[_reduced(dict(condition.composition))]
        return Candidate.from_crystals([crystal] * n, Provenance(component=self.name, seed=seed), condition)


@pytest.fixture(scope="module")
def val() -> list[Crystal]:
    return list(load_dataset("perov_5/val", max_rows=4).crystals)


@pytest.fixture(scope="module")
def train() -> list[Crystal]:
    return list(load_dataset("perov_5/train", max_rows=300).crystals)


def test_the_ground_truth_scores_full_match_and_fit_with_zero_rmse(val: list[Crystal]) -> None:
    row = evaluate_arm("perov_5/val", "truth", from_generator(TruthGenerator(val)), val, k_rows=len(val), k=3).row
    assert row["n"] == 4 and row["match_k1_%"] == 100.0 and row["fit_k1_%"] == 100.0
    assert row["match_k3_%"] == 100.0 and row["fit_k3_%"] == 100.0 and row["rmse_k1"] == pytest.approx(0.0, abs=1e-6)
    assert row["no_output_k1"] == 0 and row["mean_outputs_k3"] == 3 and row["structures_per_s"] > 0


def test_a_wrong_answer_scores_no_match(val: list[Crystal]) -> None:
    shifted = {_reduced(a.composition): b for a, b in zip(val, val[1:] + val[:1], strict=True)}
    liar = TruthGenerator(val)
    liar.by_composition = {key: Crystal(c.lattice * 1.6, c.frac_coords, c.numbers) for key, c in shifted.items()}
    row = evaluate_arm("perov_5/val", "liar", from_generator(liar), val, k_rows=0).row
    assert row["fit_k1_%"] == 0.0 and "match_k20_%" not in row  # a 60 % larger cell never fits


def test_random_same_size_baseline_keeps_the_counts_and_k1_never_beats_k(val: list[Crystal], train: list[Crystal]) -> None:
    baseline = SameSizeGenerator(train, training_dataset="perov_5/train")
    for seed, reference in enumerate(val):
        drawn = baseline.sample(4, Condition(composition=reference.composition), seed=seed)
        assert 1 <= len(drawn) <= 4 and all(c.crystal.composition == reference.composition for c in drawn)
        assert len({c.crystal.canonical_hash() for c in drawn}) == len(drawn)  # distinct parents
        first = baseline.sample(1, Condition(composition=reference.composition), seed=seed)
        assert first[0].crystal.canonical_hash() == drawn[0].crystal.canonical_hash()  # k=1 is the first of k
    row = evaluate_arm("perov_5/val", "random", from_generator(baseline), val, k_rows=len(val), k=4).row
    assert row["match_k1_%"] <= row["match_k4_%"] and row["fit_k1_%"] <= row["fit_k4_%"]
    assert row["fit_k1_%"] <= row["match_k1_%"]
    with pytest.raises(CrystaloopError, match="per-element counts"):
        baseline.sample(2, Condition(composition={"Sr": 7, "O": 1}), seed=0)


def test_template_rule_substitutes_into_training_structures(val: list[Crystal], train: list[Crystal]) -> None:
    rule = template_rule(train, training_dataset="perov_5/train")
    drawn = rule.sample(2, Condition(composition=val[0].composition), seed=0)
    assert drawn and all(c.crystal.composition == val[0].composition for c in drawn)
    assert rule.use_prototypes is False and rule.partial is False
