"""BO over the generation condition: a GP over (target, guidance) → guarded score finds the
conditions under which a fake generator produces valid crystals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets import load_dataset
from crystaloop.data.records import Candidate, CandidateStatus, Condition, Provenance
from crystaloop.data.store import CandidateStore
from crystaloop.loop.campaign import run_campaign
from crystaloop.loop.components import Components
from crystaloop.loop.config import CampaignConfig, load_campaign_config
from crystaloop.loop.guards import build_guards
from crystaloop.loop.strategies import make_strategy
from crystaloop.loop.strategies.condition_bo import ConditionBox, condition_outcomes

torch.set_num_threads(1)
OPTIMUM = {"dir_gap": 0.8, "guidance_scale": 2.5}  # where the fake generator works best
BOUNDS = {"dir_gap": (0.0, 3.0), "guidance_scale": (0.0, 4.0)}


def quality(condition: Condition) -> float:
    """Fraction of valid crystals the fake generator emits under ``condition`` (1 at the optimum)."""
    u = [(condition.properties["dir_gap"] - OPTIMUM["dir_gap"]) / 3.0, (condition.guidance_scale - OPTIMUM["guidance_scale"]) / 4.0]
    return float(np.exp(-np.sum(np.square(u)) / (2 * 0.2**2)))


class QualityGenerator:
    """Hands out distinct perov_5/val crystals; a ``1 - quality(condition)`` share of each batch is
    squeezed to overlapping atoms, which the validity guard refuses."""

    name = "quality-fake"

    def __init__(self) -> None:
        self.crystals = load_dataset("perov_5/val").crystals
        self.cursor = 0

    def sample(self, n: int, condition: Condition | None = None, *, seed: int) -> list[Candidate]:
        valid = round(n * quality(condition))
        out = []
        for j in range(n):
            c = self.crystals[self.cursor % len(self.crystals)]
            self.cursor += 1
            out.append(c if j < valid else Crystal(c.lattice * 0.3, c.frac_coords, c.numbers))
        return Candidate.from_crystals(out, Provenance(component=self.name, seed=seed), condition)


def campaign(**strategy) -> CampaignConfig:
    return CampaignConfig.model_validate(
        {
            "name": "condition-bo",
            "objectives": [{"property": "dir_gap", "goal": "target", "window": [1.5, 3.0], "units": "eV"}],
            "budget": {"iterations": 5, "candidates_per_iteration": 32, "oracle_calls_per_iteration": 1},
            "strategy": {"kind": "random", "condition_search": "bo", "condition_bounds": BOUNDS, "mc_samples": 64, **strategy},
            "generator": {"kind": "dataset-replay", "dataset": "perov_5/val"},
            "oracle": {"kind": "replay", "dataset": "perov_5/val", "measure": ["heat_ref"]},
            "guards": {
                "validity": {"smact": False},
                "synthesizability": {"enabled": False},
                "diversity": {"novelty": False, "min_distance": 0.0},
                "collapse": {"enabled": False},
            },
        }
    )


def test_box_round_trip_and_bounds():
    config = campaign()
    box = ConditionBox.from_config(config)
    assert box.names == ("dir_gap", "guidance_scale")
    condition = box.condition(np.array([0.5, 0.25]), ("Sr", "Ti", "O"))
    assert condition.properties == {"dir_gap": pytest.approx(1.5)} and condition.guidance_scale == pytest.approx(1.0)
    np.testing.assert_allclose(box.to_unit(condition), [0.5, 0.25])
    # without bounds the target window is searched, and one guidance scale is not
    plain = ConditionBox.from_config(campaign(condition_bounds={}))
    assert plain.names == ("dir_gap",) and plain.low.tolist() == [1.5] and plain.fixed_guidance == 1.0
    with pytest.raises(ValueError, match="rl policy"):
        campaign(kind="rl")
    with pytest.raises(ValueError, match="allowed"):
        campaign(condition_bounds={"band_gap": (0.0, 1.0)})


def test_outcome_is_fraction_passing_times_desirability():
    config = campaign()
    good, bad = Condition(properties={"dir_gap": 2.0}), Condition(properties={"dir_gap": 0.5})
    crystal = load_dataset("perov_5/val").crystals[0]

    def cand(condition: Condition, status: CandidateStatus, gap: float) -> Candidate:
        return Candidate(crystal=crystal, provenance=Provenance(component="t", iteration=0), condition=condition, status=status, predictions={"dir_gap": (gap, 0.0, "eV")})

    history = [cand(good, CandidateStatus.SCORED, 2.0), cand(good, CandidateStatus.REJECTED, 2.0), cand(bad, CandidateStatus.SCORED, 0.5)]
    outcomes = {o.condition.properties["dir_gap"]: o for o in condition_outcomes(history, config)}
    assert outcomes[2.0].generated == 2 and outcomes[2.0].passed == 1 and outcomes[2.0].score == pytest.approx(0.5)
    assert outcomes[0.5].score == pytest.approx(0.0)  # passed, but predicted outside the window


def test_gp_over_conditions_finds_where_the_generator_works(tmp_path):
    config = campaign()
    components = Components(generator=QualityGenerator(), oracle=config.oracle.build(), strategy=make_strategy(config), guards=build_guards(config.guards))
    with CandidateStore(f"sqlite:///{tmp_path / 's.db'}") as store:
        reports = run_campaign(components, store, config)
    per_iteration = [[quality(o.condition) for o in r.conditions] for r in reports]
    assert all(1 <= len(q) <= 4 and sum(o.generated for o in r.conditions) == 32 for q, r in zip(per_iteration, reports, strict=True))
    for report in reports:  # recorded per iteration: conditions inside the bounds, score = share that passed
        for outcome in report.conditions:
            assert 0.0 <= outcome.condition.properties["dir_gap"] <= 3.0 and 0.0 <= outcome.condition.guidance_scale <= 4.0
            assert outcome.score == pytest.approx(outcome.passed / outcome.generated)
            assert outcome.score == pytest.approx(quality(outcome.condition), abs=0.5 / outcome.generated + 1e-9)
    sobol, guided = np.mean(per_iteration[0]), np.mean([q for qs in per_iteration[2:] for q in qs])
    assert guided > sobol + 0.2  # the GP's conditions produce more valid crystals than the space-filling start
    assert max(per_iteration[-1]) > 0.9  # and the best of them sits where the generator works best


def test_example_shows_the_condition_search(tmp_path):
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "examples" / "perovskite-water-splitting.yaml").read_text()
    (line,) = [x for x in text.splitlines() if x.startswith("# strategy:") and "condition_search" in x]
    path = tmp_path / "c.yaml"
    path.write_text("\n".join(x for x in text.splitlines() if not x.startswith("strategy:")) + "\n" + line[2:] + "\n")
    config = load_campaign_config(path)
    assert config.strategy.condition_search == "bo"
    assert ConditionBox.from_config(config).names == ("dir_gap", "guidance_scale")
