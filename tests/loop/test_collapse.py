"""The collapse monitor: a collapsed batch widens the next iteration, a diverse one does not."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from crystaloop.data.datasets import load_dataset
from crystaloop.data.records import Candidate, CandidateStatus, Condition, Provenance
from crystaloop.data.store import CandidateStore
from crystaloop.data.store.testing import base_cells, perturbed_crystals
from crystaloop.generator.replay import DatasetReplayGenerator
from crystaloop.loop.campaign import adjustment_for_iteration, iteration_candidates, run_campaign
from crystaloop.loop.collapse import Adjustment, adjustment_for, assess, exploration_picks, widen_conditions
from crystaloop.loop.components import Components
from crystaloop.loop.config import CampaignConfig, CollapseMonitorConfig
from crystaloop.loop.guards import DiversityGuard, GuardContext, build_guards, collapse_report, screen
from crystaloop.loop.strategies import Labels, Pool, make_strategy
from crystaloop.loop.strategies.al import ALStrategy

MONITOR = CollapseMonitorConfig()


def _guarded(crystals) -> list[Candidate]:  # noqa: ANN001
    """Candidates with the diversity guard's verdicts, as the campaign stores them."""
    candidates = [Candidate(crystal=c, provenance=Provenance(component="t")) for c in crystals]
    return [replace(r.candidate, verdicts=r.verdicts) for r in screen(candidates, [DiversityGuard()], GuardContext())]


def test_collapsed_batch_triggers_the_reaction_and_a_diverse_one_does_not():
    rng = np.random.default_rng(0)
    collapsed = _guarded(perturbed_crystals(base_cells()["SrTiO3"], 8, rng, displacement=0.01, strain=0.005))
    diverse = _guarded(load_dataset("perov_5/val").crystals[:8])
    low, high = collapse_report(collapsed), collapse_report(diverse)
    assert low["distinct_fraction"] < 0.5 <= high["distinct_fraction"]
    assert low["vendi_fraction"] < high["vendi_fraction"]
    verdict = assess(low, Adjustment(), MONITOR)
    assert verdict.collapsed and verdict.reasons and verdict.next.level == 1
    assert verdict.next.beta_factor > 1 and verdict.next.random_fraction > 0 and verdict.next.guidance_factor < 1
    calm = assess(high, Adjustment(), MONITOR)
    assert not calm.collapsed and calm.next.neutral
    # a diverse batch after a collapse steps the level back down
    assert assess(high, adjustment_for(2, MONITOR), MONITOR).next.level == 1
    # repeats the store already held count against the distinct fraction
    assert collapse_report(diverse, repeats=24)["distinct_fraction"] < 0.5


def test_adjustment_widens_conditions_and_selection():
    conditions = [Condition(properties={"heat_ref": -0.5}, guidance_scale=2.0) for _ in range(4)]
    level2 = adjustment_for(2, MONITOR)
    widened = widen_conditions(conditions, level2)
    assert [c.guidance_scale for c in widened] == [pytest.approx(0.5)] * 4
    assert sum(not c.properties for c in widened) == 2
    assert widen_conditions(conditions, Adjustment()) == conditions
    assert exploration_picks(4, level2) == 2 and exploration_picks(4, Adjustment()) == 0
    # UCB's beta grows with the pool's exploration factor: the uncertain candidate wins
    cell = base_cells()["NaCl"]
    pool = Pool([Candidate(crystal=cell, provenance=Provenance(component="t"))] * 2, np.eye(2), Labels.empty(1, 2))
    predictions = np.array([[[1.0, 0.1]], [[0.0, 1.0]]])
    strategy = ALStrategy(CampaignConfig.model_validate({"name": "t", "objectives": [{"property": "y", "goal": "maximise"}]}).objectives)
    assert strategy.select(pool, predictions, 1).tolist() == [0]
    pool.exploration = 8.0
    assert strategy.select(pool, predictions, 1).tolist() == [1]


def _config(name: str, **monitor: float) -> CampaignConfig:
    return CampaignConfig.model_validate(
        {
            "guards": {"collapse": monitor},
            "name": name,
            "objectives": [{"property": "heat_ref", "goal": "minimise", "threshold": -0.5}],
            "budget": {"iterations": 2, "candidates_per_iteration": 8, "oracle_calls_per_iteration": 4},
            "strategy": {"kind": "al", "guidance_scales": [2.0]},
            "generator": {"kind": "dataset-replay", "dataset": "perov_5/val"},
            "oracle": {"kind": "replay", "dataset": "perov_5/val", "measure": ["heat_ref"]},
        }
    )


def _components(config: CampaignConfig, generator) -> Components:  # noqa: ANN001
    return Components(generator=generator, oracle=config.oracle.build(), strategy=make_strategy(config), guards=build_guards(config.guards))


def test_campaign_reacts_to_a_collapsing_generator_and_records_it(tmp_path):
    config = _config("collapsing")
    crystal = load_dataset("perov_5/val").crystals[0]
    generator = DatasetReplayGenerator([crystal], perturb=0.003, name="collapsing")  # one structure, jiggled
    with CandidateStore(f"sqlite:///{tmp_path / 's.db'}") as store:
        first, second = run_campaign(_components(config, generator), store, config)
        assert first.adjustment.neutral and first.collapse.collapsed
        assert second.adjustment == first.collapse.next and second.adjustment.level == 1
        conditions = [c.condition for c in iteration_candidates(store, config.name, 1)]
        assert conditions and all(c.guidance_scale == pytest.approx(2.0 * MONITOR.guidance_decay) for c in conditions)
        assert any(not c.properties for c in conditions)
        before = [c.condition for c in iteration_candidates(store, config.name, 0)]
        assert all(c.guidance_scale == pytest.approx(2.0) and c.properties for c in before)
        # a resumed process reads the same adjustment back from the store
        assert adjustment_for_iteration(store, config, 1) == first.collapse.next


def test_diverse_campaign_keeps_its_settings(tmp_path):
    config = _config("diverse")
    generator = DatasetReplayGenerator.from_dataset(load_dataset("perov_5/val"))
    with CandidateStore(f"sqlite:///{tmp_path / 's.db'}") as store:
        reports = run_campaign(_components(config, generator), store, config)
        assert all(not r.collapse.collapsed and r.adjustment.neutral for r in reports)
        conditions = [c.condition for c in iteration_candidates(store, config.name, 1)]
        assert all(c.guidance_scale == pytest.approx(2.0) and c.properties for c in conditions)
        notes = [h.note for c in iteration_candidates(store, config.name, None, [CandidateStatus.EVALUATED, CandidateStatus.FAILED]) for h in store.status_history(c.id)]
        assert not any(n.startswith("exploration pick") for n in notes)


def test_exploration_picks_follow_the_recorded_adjustment(tmp_path):
    config = _config("strict", min_vendi_fraction=1.0)  # a Vendi fraction of 1 is never reached: every batch "collapses"
    generator = DatasetReplayGenerator.from_dataset(load_dataset("perov_5/val"))
    with CandidateStore(f"sqlite:///{tmp_path / 's.db'}") as store:
        first, second = run_campaign(_components(config, generator), store, config)
        assert first.collapse.collapsed and second.adjustment.level == 1
        assert second.oracle_calls == config.budget.oracle_calls_per_iteration
        picked = iteration_candidates(store, config.name, 1, [CandidateStatus.EVALUATED, CandidateStatus.FAILED])
        notes = [h.note for c in picked for h in store.status_history(c.id) if h.to_status == CandidateStatus.SELECTED]
        assert sum(n.startswith("exploration pick") for n in notes) == exploration_picks(4, second.adjustment) == 1
