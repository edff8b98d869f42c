"""The rl strategy: the condition environment, PPO on a toy bandit, proposals, rewards from the
guarded pool, the policy checkpoint and resume, and a campaign run on replay components."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from crystaloop.data.errors import CrystaloopError
from crystaloop.data.records import Candidate, Provenance
from crystaloop.data.store import CandidateStore
from crystaloop.data.store.testing import base_cells
from crystaloop.loop.campaign import iteration_candidates, run_campaign, run_iteration
from crystaloop.loop.components import build_components
from crystaloop.loop.config import CampaignConfig, Objective
from crystaloop.loop.strategies import Labels, Pool, StrategyState, make_strategy
from crystaloop.loop.strategies.rl import (
    ConditionEnv,
    ConditionSpace,
    PPOSettings,
    RLStrategy,
    action_probabilities,
    desirability,
    make_ppo,
)

torch.set_num_threads(1)
WINDOW = {"property": "dir_gap", "goal": "target", "window": [1.5, 3.0], "units": "eV"}


def rl_config(tmp_path, name: str = "rl-unit", **strategy) -> CampaignConfig:
    """12 actions: 2 chemical systems × 2 guidance scales × 3 target offsets; 4 conditions of 3."""
    settings = {"kind": "rl", "guidance_scales": [1.0, 2.0], "rl_steps": 64, "rl_policy_dir": str(tmp_path / "policies")}
    settings.update(strategy)
    return CampaignConfig.model_validate(
        {
            "name": name,
            "objectives": [WINDOW],
            "constraints": {"chemical_systems": ["Sr-Ti-O", "Ba-Ti-O"]},
            "budget": {"iterations": 3, "candidates_per_iteration": 12, "oracle_calls_per_iteration": 2},
            "strategy": settings,
        }
    )


def state(config: CampaignConfig, iteration: int) -> StrategyState:
    return StrategyState(config, iteration, config.iteration_seed(iteration), n_conditions=4)


def guarded_pool(strategy: RLStrategy, iteration: int, good: int, rejected: int = 1) -> tuple[Pool, np.ndarray]:
    """The pool an iteration's proposal would leave: candidates of action ``good`` predicted in
    the window, all others far outside it; ``rejected`` candidates of every condition removed."""
    cell = base_cells()["NaCl"]
    candidates, means = [], []
    for action, size in strategy.history.proposals[iteration]:
        condition = strategy.space.condition(action)
        for _ in range(size - rejected):
            candidates.append(Candidate(crystal=cell, provenance=Provenance(component="t", iteration=iteration), condition=condition))
            means.append(2.25 if action == good else 6.0)
    predictions = np.stack([np.array(means)[:, None], np.full((len(means), 1), 0.1)], axis=-1)
    rng = np.random.default_rng(iteration)
    pool = Pool(candidates, rng.normal(size=(len(candidates), 4)), Labels.empty(1, 4))
    return pool, predictions


# ---------------------------------------------------------------------------- environment and PPO
def test_env_follows_the_gymnasium_api():
    env = ConditionEnv(5, lambda action, rng: float(action == 3) + 0.1 * rng.random(), lambda: np.linspace(0, 1, 10))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*render.*")
        check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.float32 and env.observation_space.contains(obs) and info == {}
    _, reward, terminated, truncated, info = env.step(3)
    assert terminated and not truncated and 1.0 <= reward <= 1.1 and info == {"action": 3}
    with pytest.raises(CrystaloopError, match="action 5"):
        env.step(5)
    with pytest.raises(CrystaloopError, match="n_actions=0"):
        ConditionEnv(0, lambda action, rng: 0.0)


def test_short_ppo_training_prefers_the_best_action():
    best = 4
    env = ConditionEnv(6, lambda action, rng: 1.0 if action == best else 0.2 * rng.random())
    model = make_ppo(env, PPOSettings(), seed=0)
    before = action_probabilities(model, np.zeros(12))
    np.testing.assert_allclose(before, 1 / 6, atol=0.05)  # an untrained policy is near uniform
    model.learn(total_timesteps=256)
    after = action_probabilities(model, np.zeros(12))
    assert int(np.argmax(after)) == best and after[best] > 0.4
    assert after.sum() == pytest.approx(1.0)


# ---------------------------------------------------------------------------- conditions and rewards
def test_condition_space_covers_systems_guidance_and_offsets(tmp_path):
    config = rl_config(tmp_path)
    space = ConditionSpace.from_config(config)
    assert len(space) == 12 == len(set(space.describe()))
    conditions = [space.condition(a) for a in range(len(space))]
    assert {frozenset(c.chemical_system) for c in conditions} == {frozenset({"Sr", "Ti", "O"}), frozenset({"Ba", "Ti", "O"})}
    assert {c.guidance_scale for c in conditions} == {1.0, 2.0}
    # targets: the window midpoint 2.25 moved by -0.25, 0, +0.25 of the width 1.5
    assert sorted({c.properties["dir_gap"] for c in conditions}) == pytest.approx([1.875, 2.25, 2.625])
    with pytest.raises(CrystaloopError, match="action 12"):
        space.condition(12)
    # without a target or threshold the offsets collapse (they would move nothing)
    free = CampaignConfig.model_validate({"name": "f", "objectives": [{"property": "y", "goal": "maximise"}], "strategy": {"kind": "rl"}})
    assert len(ConditionSpace.from_config(free)) == 1


def test_desirability_is_the_probability_of_a_hit():
    window = (Objective(**WINDOW),)
    preds = np.array([[[2.25, 0.01]], [[6.0, 0.01]], [[3.0, 0.0]], [[3.0, 1e9]]])
    np.testing.assert_allclose(desirability(preds, window), [1.0, 0.0, 1.0, 0.0], atol=1e-6)
    minimise = (Objective(property="e", goal="minimise", threshold=0.1), Objective(property="g", goal="maximise", weight=3.0))
    # g has no prediction: only e counts; P(e <= 0.1) for N(0.1, 1) is 1/2
    preds = np.array([[[0.1, 1.0], [np.nan, np.nan]]])
    np.testing.assert_allclose(desirability(preds, minimise), [0.5])
    # no threshold: probability of improving on the incumbent; weights make a geometric mean
    preds = np.array([[[0.1, 1.0], [2.0, 0.0]], [[0.1, 1.0], [0.0, 0.0]]])
    np.testing.assert_allclose(desirability(preds, minimise, incumbent=np.array([np.nan, 1.0])), [0.5**0.25, 0.0])
    assert desirability(np.full((2, 2, 2), np.nan), minimise).tolist() == [1.0, 1.0]
    with pytest.raises(CrystaloopError, match=r"\(n, 2, 2\)"):
        desirability(np.zeros((3, 1, 2)), minimise)


def test_propose_returns_valid_conditions_and_select_delegates(tmp_path):
    config = rl_config(tmp_path)
    strategy = make_strategy(config)
    assert isinstance(strategy, RLStrategy) and strategy.name == "rl"
    conditions = strategy.propose(state(config, 0))
    assert len(conditions) == 4 and len({c.model_dump_json() for c in conditions}) == 4
    allowed = [set(s) for s in config.constraints.chemical_systems]
    for c in conditions:
        assert set(c.chemical_system) in allowed and c.guidance_scale in (1.0, 2.0)
        assert 1.5 <= c.properties["dir_gap"] <= 3.0
    assert [s for _, s in strategy.history.proposals[0]] == [3, 3, 3, 3]
    # the same seed in a fresh policy gives the same proposal
    again = RLStrategy(config, policy_dir=tmp_path / "other").propose(state(config, 0))
    assert again == conditions
    pool, predictions = guarded_pool(strategy, 0, good=strategy.history.proposals[0][1][0])
    picks = strategy.select(pool, predictions, 2)
    assert len(set(picks.tolist())) == 2 and all(0 <= i < len(pool) for i in picks)
    np.testing.assert_array_equal(picks, strategy._al.select(pool, predictions, 2))


def test_rewards_are_fraction_passing_times_desirability_and_steer_the_policy(tmp_path):
    config = rl_config(tmp_path)
    strategy = RLStrategy(config)
    good = None
    for iteration in range(5):
        strategy.propose(state(config, iteration))
        if good is None:
            good = strategy.history.proposals[0][2][0]
        pool, predictions = guarded_pool(strategy, iteration, good=good)
        rewards = strategy.record_rewards(pool, predictions)
        # 2 of 3 candidates per condition passed the guards; only the good one lands in the window
        assert rewards == {a: pytest.approx(2 / 3 if a == good else 0.0, abs=1e-6) for a, _ in strategy.history.proposals[iteration]}
        assert strategy.record_rewards(pool, predictions) == {}  # a resumed selection adds nothing
    strategy.propose(state(config, 5))
    probs = strategy.probabilities()
    tried_bad = [a for a in strategy.history.rewards if a != good]
    assert tried_bad and all(probs[good] > probs[a] for a in tried_bad)
    assert int(np.argmax(probs)) == good and probs[good] > 2 / len(strategy.space)


def test_iteration_without_scored_candidates_gets_reward_zero(tmp_path):
    config = rl_config(tmp_path)
    strategy = RLStrategy(config)
    strategy.propose(state(config, 0))
    strategy.propose(state(config, 1))  # iteration 0 never reached select: all rejected
    assert strategy.history.rewarded == {0}
    assert all(strategy.history.rewards[a] == [0.0] for a, _ in strategy.history.proposals[0])
    assert strategy.history.trained_through == 1


# ---------------------------------------------------------------------------- checkpoint and resume
def test_checkpoint_round_trip_and_resume_continue_the_same_policy(tmp_path):
    config = rl_config(tmp_path)
    first = RLStrategy(config)
    first.propose(state(config, 0))
    first.record_rewards(*guarded_pool(first, 0, good=first.history.proposals[0][0][0]))
    proposed = first.propose(state(config, 1))  # trains on iteration 0's rewards
    assert first.path.is_file() and first.model.num_timesteps >= 64

    # round trip: a new process sees the same policy, optimiser state and history
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copy(first.path, resumed_dir / first.path.name)
    second = RLStrategy(config, policy_dir=resumed_dir)
    assert second.history == first.history and second.model.num_timesteps == first.model.num_timesteps
    for (name, a), (_, b) in zip(first.model.policy.state_dict().items(), second.model.policy.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    np.testing.assert_array_equal(second.probabilities(), first.probabilities())
    assert second.propose(state(config, 1)) == proposed  # recorded proposal, not redrawn

    # resume continues: the same rewards give the same training and the same next proposal
    for strategy in (first, second):
        strategy.record_rewards(*guarded_pool(strategy, 1, good=first.history.proposals[0][0][0]))
    assert first.propose(state(config, 2)) == second.propose(state(config, 2))
    for a, b in zip(first.model.policy.parameters(), second.model.policy.parameters(), strict=True):
        assert torch.equal(a, b)
    assert first.model.num_timesteps == second.model.num_timesteps >= 128


def test_checkpoint_of_another_run_is_refused(tmp_path):
    config = rl_config(tmp_path)
    strategy = RLStrategy(config)
    for iteration in range(2):
        strategy.propose(state(config, iteration))
    with pytest.raises(CrystaloopError, match="earlier run"):
        RLStrategy(config).propose(state(config, 0))
    changed = rl_config(tmp_path, rl_steps=32)
    with pytest.raises(CrystaloopError, match="config hash"):
        RLStrategy(changed)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / f"{config.name}.rl.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CrystaloopError, match="cannot read"):
        RLStrategy(config, policy_dir=tmp_path / "bad")
    memory = RLStrategy(config.model_copy(update={"strategy": config.strategy.model_copy(update={"rl_policy_dir": None})}))
    memory.propose(state(config, 0))
    assert memory.path is None


# ---------------------------------------------------------------------------- campaign
def replay_rl_config(policy_dir, iterations: int = 2) -> CampaignConfig:
    return CampaignConfig.model_validate(
        {
            "name": "replay-rl",
            "objectives": [{"property": "heat_ref", "goal": "minimise", "units": "eV", "threshold": 0.9}],
            "budget": {"iterations": iterations, "candidates_per_iteration": 16, "oracle_calls_per_iteration": 2},
            "strategy": {"kind": "rl", "guidance_scales": [1.0, 2.0], "rl_steps": 32, "rl_policy_dir": str(policy_dir)},
            "generator": {"kind": "dataset-replay", "dataset": "perov_5/val"},
            "surrogates": [{"kind": "shipped", "name": "perov_5-heat_ref"}],
            "oracle": {"kind": "replay", "dataset": "perov_5/val", "measure": ["heat_ref"]},
        }
    )


def test_campaign_with_rl_runs_and_resumes_with_its_policy(tmp_path):
    config = replay_rl_config(tmp_path / "full")
    with CandidateStore(f"sqlite:///{tmp_path / 'full.db'}") as store:
        reports = run_campaign(build_components(config), store, config)
        assert [r.iteration for r in reports] == [0, 1]
        assert all(r.oracle_calls == 2 for r in reports)
        full = {i: [c.id for c in iteration_candidates(store, config.name, i)] for i in (0, 1)}
        space = ConditionSpace.from_config(config)
        allowed = [space.condition(a) for a in range(len(space))]
        assert all(c.condition in allowed for c in iteration_candidates(store, config.name))
    policy = RLStrategy(config)
    assert sorted(policy.history.proposals) == [0, 1] and policy.history.rewarded == {0, 1}
    assert policy.history.trained_through == 1 and policy.model.num_timesteps >= 32
    # about a quarter of perov_5/val lies below 0.9 eV: some condition earned a positive reward
    rewards = [r for history in policy.history.rewards.values() for r in history]
    assert all(0.0 <= r <= 1.0 for r in rewards) and max(rewards) > 0.05

    # the same campaign stopped after iteration 0 and resumed by a fresh process (new components)
    cut = replay_rl_config(tmp_path / "cut")
    with CandidateStore(f"sqlite:///{tmp_path / 'cut.db'}") as store:
        run_iteration(build_components(cut), store, cut, 0)
        resumed = build_components(cut)
        assert resumed.strategy.history.rewarded == {0}
        run_iteration(resumed, store, cut)
        assert {i: [c.id for c in iteration_candidates(store, cut.name, i)] for i in (0, 1)} == full
    assert RLStrategy(cut).history == policy.history
