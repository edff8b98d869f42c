"""Allocation between a composite generator's arms: the bandit moves budget toward the arm whose
candidates the (replayed) oracle verifies as hits, shares are reproducible on resume, rl chooses mixes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crystaloop.data.datasets import load_dataset
from crystaloop.data.store import CandidateStore
from crystaloop.generator.composite import CompositeGenerator, apportion
from crystaloop.generator.replay import DatasetReplayGenerator
from crystaloop.loop.allocation import ArmOutcome, floored_shares, thompson_shares, tilted_mixes
from crystaloop.loop.campaign import iteration_allocation, iteration_candidates, run_campaign, run_iteration
from crystaloop.loop.components import Components
from crystaloop.loop.config import CampaignConfig
from crystaloop.loop.guards import build_guards
from crystaloop.loop.strategies import make_strategy
from crystaloop.surrogates.oracles.replay import ReplayOracle

torch.set_num_threads(1)
THRESHOLD = 1.0  # heat_ref (eV) below which a replayed perov_5/val crystal is a hit: ~30 % of them


def config(allocation: str = "bandit", strategy: str = "random", iterations: int = 4, **extra) -> CampaignConfig:  # noqa: ANN003
    arm = {"kind": "dataset-replay", "dataset": "perov_5/val"}
    return CampaignConfig.model_validate({
        "name": f"arms-{allocation}-{strategy}",
        "objectives": [{"property": "heat_ref", "goal": "minimise", "units": "eV", "threshold": THRESHOLD}],
        "budget": {"iterations": iterations, "candidates_per_iteration": 20, "oracle_calls_per_iteration": 8},
        "strategy": {"kind": strategy, "allocation": {"kind": allocation, "floor": 0.1}, **extra},
        "generator": {"kind": "composite", "arms": [{"name": "good", "share": 0.5, "generator": arm}, {"name": "poor", "share": 0.5, "generator": arm}]},
        "oracle": {"kind": "replay", "dataset": "perov_5/val", "measure": ["heat_ref"]},
        "guards": {"synthesizability": {"enabled": False}},
        "sun": {"enabled": False},
        "seed": 5,
    })


def components(cfg: CampaignConfig) -> Components:
    """The replayed oracle over perov_5/val; arm ``good`` hands out its crystals below the
    threshold (every one a hit), ``poor`` the rest (none)."""
    data = load_dataset("perov_5/val")
    heat = np.asarray(data.properties["heat_ref"])
    good = [c for c, h in zip(data.crystals, heat, strict=True) if h <= THRESHOLD]
    poor = [c for c, h in zip(data.crystals, heat, strict=True) if h > THRESHOLD]
    generator = CompositeGenerator([("good", DatasetReplayGenerator(good)), ("poor", DatasetReplayGenerator(poor))], cfg.generator.shares)
    return Components(generator=generator, oracle=ReplayOracle(data, ["heat_ref"]), strategy=make_strategy(cfg), guards=build_guards(cfg.guards))


def test_thompson_shares_favour_the_better_arm_and_keep_the_floor() -> None:
    outcomes = {"a": ArmOutcome(oracle_calls=10, hits=6), "b": ArmOutcome(oracle_calls=10, hits=1), "c": ArmOutcome()}
    shares = thompson_shares(outcomes, floor=0.1, draws=4096, seed=0)
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["a"] > shares["c"] > shares["b"] >= 0.1 - 1e-12
    assert shares == thompson_shares(outcomes, floor=0.1, draws=4096, seed=0)
    assert floored_shares({"a": 1.0, "b": 0.0}, 0.7) == {"a": 0.5, "b": 0.5}  # floor capped at 1/K
    assert tilted_mixes(["a", "b"], {"a": 0.5, "b": 0.5}, 0.2)[1] == pytest.approx({"a": 0.8, "b": 0.2})


def test_bandit_moves_budget_to_the_arm_with_more_verified_hits(tmp_path) -> None:  # noqa: ANN001
    runs = {}
    for allocation in ("bandit", "fixed"):
        cfg = config(allocation)
        with CandidateStore(f"sqlite:///{tmp_path / f'{allocation}.db'}") as store:
            reports = run_campaign(components(cfg), store, cfg)
            runs[allocation] = reports
            for report in reports:  # the report's counts are what the store holds
                candidates = iteration_candidates(store, cfg.name, report.iteration)
                assert report.arms is not None and report.arms.kind == allocation
                assert report.arms.generated == {a: sum(c.provenance.arm == a for c in candidates) for a in ("good", "poor")}
                assert sum(o.oracle_calls for o in report.arms.outcomes.values()) == report.oracle_calls
                assert report.arms.outcomes["poor"].hits == 0
                assert sum(o.hits for o in report.arms.outcomes.values()) == len(report.verified_hits)
    bandit, fixed = runs["bandit"], runs["fixed"]
    assert all(r.arms.shares == {"good": 0.5, "poor": 0.5} for r in fixed)
    assert bandit[0].arms.shares == {"good": 0.5, "poor": 0.5}  # nothing measured yet: even odds
    good = [r.arms.shares["good"] for r in bandit]
    assert good[-1] > 0.8 and all(b >= a - 1e-9 for a, b in zip(good[1:], good[2:], strict=False))
    assert min(r.arms.shares["poor"] for r in bandit) >= 0.1 - 1e-9  # the floor: no arm starves
    assert all(r.arms.generated["poor"] >= 1 for r in bandit)
    later_calls = sum(r.arms.outcomes["good"].oracle_calls for r in bandit[1:])
    assert later_calls > sum(r.arms.outcomes["good"].oracle_calls for r in fixed[1:])
    assert sum(len(r.verified_hits) for r in bandit) > sum(len(r.verified_hits) for r in fixed)


def test_shares_are_computed_from_the_store_so_a_resumed_campaign_gets_the_same(tmp_path) -> None:  # noqa: ANN001
    cfg = config("bandit", iterations=3)
    with CandidateStore(f"sqlite:///{tmp_path / 'full.db'}") as full, CandidateStore(f"sqlite:///{tmp_path / 'cut.db'}") as cut:
        whole = run_campaign(components(cfg), full, cfg)
        run_iteration(components(cfg), cut, cfg, 0)
        run_iteration(components(cfg), cut, cfg, 1)
        fresh = components(cfg)  # a new process: nothing in memory but the store
        assert iteration_allocation(fresh, cut, cfg, 2)[0].shares == whole[2].arms.shares
        resumed = run_campaign(fresh, cut, cfg)
        assert [r.arms.shares for r in resumed] == [r.arms.shares for r in whole]
        assert [c.id for c in iteration_candidates(cut, cfg.name)] == [c.id for c in iteration_candidates(full, cfg.name)]


def test_rl_actions_include_arm_mixes_and_the_engine_generates_with_them(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    cfg = config("bandit", strategy="rl", iterations=2, rl_steps=16, rl_policy_dir=None)
    parts = components(cfg)
    space = parts.strategy.space
    assert [dict(m) for m in space.mixes] == [{"good": 0.5, "poor": 0.5}, {"good": 0.9, "poor": 0.1}, {"good": 0.1, "poor": 0.9}]
    assert len(space) == 3 * 3 and {tuple(space.mix(a).values()) for a in range(len(space))} == {(0.5, 0.5), (0.9, 0.1), (0.1, 0.9)}
    assert all("| arms good" in line for line in space.describe())
    with CandidateStore(f"sqlite:///{tmp_path / 'rl.db'}") as store:
        reports = run_campaign(parts, store, cfg)
        for report in reports:
            mixes = parts.strategy.arm_mixes(report.iteration)
            sizes = [20 // len(mixes) + (j < 20 % len(mixes)) for j in range(len(mixes))]
            expected = {a: sum(apportion(n, m)[a] for m, n in zip(mixes, sizes, strict=True)) for a in ("good", "poor")}
            assert report.arms.kind == "rl" and report.arms.generated == expected
        assert parts.strategy.history.rewards  # the policy learned from what its mixes produced
    fixed = components(config("fixed", strategy="rl", rl_policy_dir=None)).strategy
    assert fixed.space.mixes == ((),) and fixed.arm_mixes(0) is None
