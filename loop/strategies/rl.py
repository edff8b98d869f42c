"""Reinforcement learning over generation conditions: a PPO policy chooses what to generate.

The actions are a grid of :class:`~crystaloop.data.records.Condition` s (:class:`ConditionSpace`):
allowed chemical systems × guidance scales × target offsets, and, with a composite generator and
``allocation: {kind: bandit}``, × arm mixes (the configured shares, or one arm favoured with the
others at the floor; :func:`~crystaloop.loop.allocation.tilted_mixes`), which the engine passes
to the generator with the condition. Each iteration:

1. ``propose`` settles the rewards of earlier iterations, gives the policy ``rl_steps`` PPO
   environment steps on them (:class:`ConditionEnv`: one step per episode, observe the reward
   summary, pick a condition, receive a reward), then draws ``n_conditions`` distinct actions from
   the policy (seeded) and records them with the number of candidates each generates.
2. ``select`` turns the guarded score of each proposed condition into its reward: the summed
   :func:`desirability` of its candidates that passed the guards (the pool), divided by the number
   it generated, i.e. fraction passing × mean desirability, in [0, 1]; with arm mixes, the mix's
   average over arms of that per-arm rate (every arm got at least its floor, so each rate is
   observed whatever mix generated it). Picks are active
   learning's (:class:`~crystaloop.loop.strategies.al.ALStrategy`): RL controls what is
   generated, AL what is measured.

A condition whose candidates were all rejected never reaches ``select``; the next ``propose``
gives it reward 0. The training environment replays observed rewards (a uniform draw from an
action's history); untried actions get the best observed mean (optimism, so each gets tried).
Training seeds SB3's global generators (python, numpy, torch) from the iteration seed.

The policy, its optimiser state and the history live in ``<rl_policy_dir>/<campaign>.rl.pt``
(a torch file loadable with ``weights_only=True``), rewritten after every propose and every
rewarded select, so a resumed campaign continues the same policy; a proposal already recorded
for an iteration is returned again, not redrawn.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO

from crystaloop.data.errors import CrystaloopError
from crystaloop.data.records import Condition
from crystaloop.generator.composite import CompositeChoice, apportion
from crystaloop.loop.allocation import tilted_mixes
from crystaloop.loop.config import CampaignConfig, Objective
from crystaloop.loop.strategies.al import ALConfig, ALStrategy
from crystaloop.loop.strategies.base import Pool, StrategyState
from crystaloop.loop.strategies.reward import desirability
from crystaloop.loop.strategies.rl_config import RLConfig

__all__ = ["ConditionSpace", "ConditionEnv", "PPOSettings", "desirability", "make_ppo", "action_probabilities", "RLStrategy", "FORMAT"]

logger = logging.getLogger(__name__)

FORMAT = "crystaloop.rl-policy/1"
"""Format tag of the policy checkpoint."""

_Key = tuple[frozenset[str] | None, float, tuple[tuple[str, float], ...]]


# ---------------------------------------------------------------------------- actions
@dataclass(frozen=True)
class ConditionSpace:
    """The discrete actions: every (chemical system, guidance scale, target offset, arm mix) combination.

    Attributes:
        systems: chemical systems (``None``: unconstrained).
        guidance_scales: classifier-free guidance weights.
        offsets: target offsets, in units of each target's span.
        targets: ``(property, base value, signed span)``; a property's target is
            ``base + offset · span``.
        mixes: arm shares of a composite generator, each ``((arm, share), ...)``; ``((),)``
            (one empty mix) without arm allocation.
    """

    systems: tuple[tuple[str, ...] | None, ...]
    guidance_scales: tuple[float, ...]
    offsets: tuple[float, ...]
    targets: tuple[tuple[str, float, float], ...]
    mixes: tuple[tuple[tuple[str, float], ...], ...] = ((),)

    @classmethod
    def from_config(cls, config: CampaignConfig) -> ConditionSpace:
        """Systems as :func:`~crystaloop.loop.strategies.base.default_conditions` cycles them,
        the strategy's guidance scales and ``rl_target_offsets`` around the objectives' targets
        (window midpoint, span its width; threshold, span ``|threshold|`` towards the goal)."""
        targets = []
        for objective in config.objectives:
            if objective.window is not None:
                low, high = objective.window
                targets.append((objective.property, 0.5 * (low + high), high - low))
            elif objective.threshold is not None:
                sign = 1.0 if objective.goal == "maximise" else -1.0
                targets.append((objective.property, objective.threshold, sign * abs(objective.threshold)))
        constraints = config.constraints
        systems: list[tuple[str, ...] | None] = list(constraints.chemical_systems or [None])
        if constraints.chemical_systems is None and constraints.elements is not None:
            systems = [constraints.elements]
        movable = any(span != 0 for _, _, span in targets)
        offsets = (0.0,)
        if movable and isinstance(config.strategy, RLConfig):
            offsets = tuple(dict.fromkeys(config.strategy.rl_target_offsets))
        mixes: tuple[tuple[tuple[str, float], ...], ...] = ((),)
        if isinstance(config.generator, CompositeChoice) and config.strategy.allocation.kind == "bandit":
            found = tilted_mixes(config.generator.arm_names, config.generator.shares, config.strategy.allocation.floor)
            mixes = tuple(dict.fromkeys(tuple((a, round(v, 6)) for a, v in m.items()) for m in found))
        return cls(tuple(systems), tuple(dict.fromkeys(config.strategy.guidance_scales)), offsets, tuple(targets), mixes)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return len(self.systems), len(self.guidance_scales), len(self.offsets), len(self.mixes)

    def mix(self, action: int) -> dict[str, float]:
        """The arm shares of ``action`` (empty without arm allocation)."""
        return dict(self.mixes[int(np.unravel_index(int(action), self.shape)[3])])

    def __len__(self) -> int:
        return int(np.prod(self.shape))

    def condition(self, action: int) -> Condition:
        """The condition of ``action`` (0 ≤ action < len(self))."""
        if not 0 <= int(action) < len(self):
            raise CrystaloopError(f"action {action} is outside this condition space; valid actions are 0..{len(self) - 1}")
        s, g, o, _ = (int(i) for i in np.unravel_index(int(action), self.shape))
        properties = {name: base + self.offsets[o] * span for name, base, span in self.targets}
        return Condition(chemical_system=self.systems[s], properties=properties, guidance_scale=self.guidance_scales[g])

    def describe(self) -> list[str]:
        """One line per action (checkpoints record it; logs show it)."""
        out = []
        for action in range(len(self)):
            s, g, o, m = (int(i) for i in np.unravel_index(action, self.shape))
            system = "-".join(self.systems[s]) if self.systems[s] is not None else "any"
            arms = f" | arms {' '.join(f'{a} {v:g}' for a, v in self.mixes[m])}" if self.mixes[m] else ""
            out.append(f"{system} | guidance {self.guidance_scales[g]:g} | offset {self.offsets[o]:+g}{arms}")
        return out


def _key(condition: Condition, properties: frozenset[str]) -> _Key:
    """What the generator saw of a condition: its system, guidance and the targets it kept."""
    system = frozenset(condition.chemical_system) if condition.chemical_system is not None else None
    kept = tuple(sorted((k, round(v, 6)) for k, v in condition.properties.items() if k in properties))
    return system, round(condition.guidance_scale, 6), kept


def _incumbent(pool: Pool, objectives: Sequence[Objective]) -> np.ndarray:
    """(m,) best measured value per objective in the pool's labels (NaN where none)."""
    out = np.full(len(objectives), np.nan)
    values = pool.labels.values
    for j, objective in enumerate(objectives):
        column = values[:, j][np.isfinite(values[:, j])] if len(values) else np.zeros(0)
        if column.size and objective.goal != "target":
            out[j] = column.max() if objective.goal == "maximise" else column.min()
    return out


# ---------------------------------------------------------------------------- environment
class ConditionEnv(gym.Env):
    """One step per episode: observe the campaign's reward summary, choose a condition, get its reward.

    Args:
        n_actions: number of conditions (a ``Discrete`` action space).
        reward: ``(action, rng) -> float``, the reward of generating under that condition.
        observe: ``() -> array (2·n_actions,)`` in [0, 1] (clipped); zeros when ``None``.
    """

    metadata = {"render_modes": []}

    def __init__(self, n_actions: int, reward: Callable[[int, np.random.Generator], float], observe: Callable[[], np.ndarray] | None = None) -> None:
        if n_actions < 1:
            raise CrystaloopError(f"a condition environment needs at least one action, got n_actions={n_actions}")
        super().__init__()
        self.action_space = gym.spaces.Discrete(n_actions)
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(2 * n_actions,), dtype=np.float32)
        self._reward = reward
        self._observe = observe

    def _observation(self) -> np.ndarray:
        if self._observe is None:
            return np.zeros(self.observation_space.shape, dtype=np.float32)
        obs = np.asarray(self._observe(), dtype=np.float32)
        if obs.shape != self.observation_space.shape:
            raise CrystaloopError(f"observation has shape {obs.shape}; this environment needs {self.observation_space.shape}")
        return np.clip(obs, 0.0, 1.0)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        return self._observation(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise CrystaloopError(f"action {action!r} is not in {self.action_space}")
        reward = float(self._reward(int(action), self.np_random))
        return self._observation(), reward, True, False, {"action": int(action)}


@dataclass(frozen=True)
class PPOSettings:
    """PPO hyperparameters of the condition policy (small: the environment is a bandit)."""

    n_steps: int = 16
    batch_size: int = 16
    n_epochs: int = 4
    learning_rate: float = 3e-3
    ent_coef: float = 0.01
    hidden: int = 16


def make_ppo(env: gym.Env, settings: PPOSettings, seed: int) -> PPO:
    """A PPO learner with a small MLP policy and value head on ``env`` (CPU)."""
    return PPO(
        "MlpPolicy",
        env,
        n_steps=settings.n_steps,
        batch_size=settings.batch_size,
        n_epochs=settings.n_epochs,
        learning_rate=settings.learning_rate,
        ent_coef=settings.ent_coef,
        gamma=0.0,
        gae_lambda=1.0,
        policy_kwargs={"net_arch": {"pi": [settings.hidden], "vf": [settings.hidden]}},
        seed=seed,
        device="cpu",
        verbose=0,
    )


def action_probabilities(model: PPO, observation: np.ndarray) -> np.ndarray:
    """The policy's (n_actions,) action probabilities at one observation."""
    with torch.no_grad():
        obs, _ = model.policy.obs_to_tensor(np.asarray(observation, dtype=np.float32))
        probs = model.policy.get_distribution(obs).distribution.probs[0].cpu().numpy().astype(np.float64)
    return probs / probs.sum()


# ---------------------------------------------------------------------------- strategy
@dataclass
class _History:
    """What the policy learned from: rewards per action, proposals per iteration."""

    rewards: dict[int, list[float]] = field(default_factory=dict)
    proposals: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    rewarded: set[int] = field(default_factory=set)
    trained_through: int = -1

    def to_json(self) -> dict[str, Any]:
        return {
            "rewards": {str(a): r for a, r in sorted(self.rewards.items())},
            "proposals": {str(i): [list(p) for p in ps] for i, ps in sorted(self.proposals.items())},
            "rewarded": sorted(self.rewarded),
            "trained_through": self.trained_through,
        }

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> _History:
        return cls(
            rewards={int(a): [float(x) for x in r] for a, r in payload["rewards"].items()},
            proposals={int(i): [(int(a), int(s)) for a, s in ps] for i, ps in payload["proposals"].items()},
            rewarded={int(i) for i in payload["rewarded"]},
            trained_through=int(payload["trained_through"]),
        )


def _derive(seed: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0] % (2**31 - 1))


def _split(total: int, parts: int) -> list[int]:
    """Candidates per condition, as the campaign engine splits ``total`` over ``parts``."""
    return [total // parts + (j < total % parts) for j in range(parts)]


class RLStrategy:
    """See the module docstring.

    Args:
        config: the campaign (objectives, constraints, budget, strategy settings, name).
        policy_dir: folder of the policy checkpoint; default ``config.strategy.rl_policy_dir``
            (``None`` there: in memory only). An existing checkpoint is loaded.
        settings: PPO settings for a new policy (a loaded checkpoint keeps its own).
    """

    name = "rl"

    def __init__(self, config: CampaignConfig, *, policy_dir: str | Path | None = None, settings: PPOSettings | None = None) -> None:
        if not isinstance(config.strategy, RLConfig):
            raise CrystaloopError(f"campaign {config.name}: RLStrategy needs strategy kind 'rl', got {config.strategy.kind!r}")
        self.config = config
        self.rl: RLConfig = config.strategy
        self.objectives = tuple(config.objectives)
        self.space = ConditionSpace.from_config(config)
        self.settings = settings or PPOSettings()
        self.history = _History()
        directory = policy_dir if policy_dir is not None else self.rl.rl_policy_dir
        self.path = None if directory is None else Path(directory) / f"{config.name}.rl.pt"
        selection = ALConfig.ranking(self.rl, acquisition=self.rl.acquisition, beta=self.rl.beta)
        self._al = ALStrategy(config.objectives, selection, seed=config.seed)
        self.env = ConditionEnv(len(self.space), self._replay_reward, self.observation)
        self.model = make_ppo(self.env, self.settings, seed=config.seed)
        if self.path is not None and self.path.is_file():
            self._load(self.path)

    # -- environment callbacks
    def observation(self) -> np.ndarray:
        """(2·n_actions,) mean observed reward per action (0 untried), then visits over the most visits."""
        n = len(self.space)
        means = np.array([np.mean(self.history.rewards[a]) if self.history.rewards.get(a) else 0.0 for a in range(n)])
        counts = np.array([len(self.history.rewards.get(a, ())) for a in range(n)], dtype=np.float64)
        return np.concatenate([means, counts / max(counts.max(), 1.0)]).astype(np.float32)

    def _replay_reward(self, action: int, rng: np.random.Generator) -> float:
        observed = self.history.rewards.get(action)
        if observed:
            return float(observed[int(rng.integers(len(observed)))])
        means = [np.mean(r) for r in self.history.rewards.values() if r]
        return float(max(means)) if means else 0.0

    # -- the port
    def propose(self, state: StrategyState) -> list[Condition]:
        index = state.iteration
        self._check_continues(index)
        if index in self.history.proposals:
            logger.info("rl: iteration %d was proposed before (resumed); same conditions", index)
            return [self.space.condition(a) for a, _ in self.history.proposals[index]]
        self._settle(before=index)
        if self.history.rewards and self.history.trained_through < index:
            self.train(self.rl.rl_steps, seed=_derive(state.seed, 0))
            self.history.trained_through = index
        actions = self.choose(state.n_conditions, seed=_derive(state.seed, 1))
        sizes = _split(self.config.budget.candidates_per_iteration, len(actions))
        self.history.proposals[index] = [(a, s) for a, s in zip(actions, sizes, strict=True)]
        self.save()
        names = self.space.describe()
        logger.info("rl: iteration %d proposes %s", index, "; ".join(names[a] for a in actions))
        return [self.space.condition(a) for a in actions]

    def arm_mixes(self, index: int) -> list[dict[str, float]] | None:
        """The arm shares of each condition proposed for iteration ``index``, in order (``None``:
        no arm allocation, or nothing proposed for it)."""
        if self.space.mixes == ((),) or index not in self.history.proposals:
            return None
        return [self.space.mix(a) for a, _ in self.history.proposals[index]]

    def select(self, pool: Pool, predictions: np.ndarray, k: int) -> np.ndarray:
        if len(pool):
            self.record_rewards(pool, predictions)
        return self._al.select(pool, predictions, k)

    # -- learning
    def train(self, steps: int, *, seed: int) -> None:
        """``steps`` PPO environment steps (rounded up to whole rollouts) on the rewards so far."""
        self.model.set_random_seed(seed)
        self.model._last_obs = None  # reset the env with the new seed, as a resumed process would
        self.model.learn(total_timesteps=steps, reset_num_timesteps=False)

    def probabilities(self) -> np.ndarray:
        """The policy's action probabilities at the current observation."""
        return action_probabilities(self.model, self.observation())

    def choose(self, n: int, *, seed: int) -> list[int]:
        """``n`` actions drawn from the policy without replacement (Gumbel top-k), cycled when
        ``n`` exceeds the number of actions."""
        if n < 1:
            raise CrystaloopError(f"the policy must propose at least one condition, got n={n}")
        rng = np.random.default_rng(seed)
        with np.errstate(divide="ignore"):
            keys = np.log(self.probabilities()) + rng.gumbel(size=len(self.space))
        order = [int(a) for a in np.argsort(-keys, kind="stable")]
        return [order[j % len(order)] for j in range(n)]

    def record_rewards(self, pool: Pool, predictions: np.ndarray) -> dict[int, float]:
        """Rewards of the pool's iteration's proposed conditions (recorded once per iteration;
        empty when already recorded or when the proposal is unknown)."""
        iterations = {c.provenance.iteration for c in pool.candidates}
        if len(iterations) != 1 or None in iterations:
            logger.warning("rl: pool spans iterations %s; no reward recorded", sorted(iterations, key=str))
            return {}
        (index,) = iterations
        if index in self.history.rewarded:
            return {}
        proposal = self.history.proposals.get(index)
        if proposal is None:
            logger.warning("rl: no recorded proposal for iteration %d (policy file %s missing?); no reward recorded", index, self.path)
            return {}
        scores = desirability(predictions, self.objectives, _incumbent(pool, self.objectives))
        kept = frozenset(p for c in pool.candidates if c.condition is not None for p in c.condition.properties)
        rewards = self._mixed_rewards(pool, scores, proposal, kept) if self.space.mixes != ((),) else self._rewards(pool, scores, proposal, kept)
        self._add_rewards(index, rewards)
        names = self.space.describe()
        logger.info("rl: iteration %d rewards %s", index, "; ".join(f"{names[a]}: {r:.3f}" for a, r in rewards.items()))
        return rewards

    def _rewards(self, pool: Pool, scores: np.ndarray, proposal: Sequence[tuple[int, int]], kept: frozenset[str]) -> dict[int, float]:
        """Per action: summed desirability of its condition's pool candidates over those generated."""
        sizes: dict[_Key, int] = {}
        for action, size in proposal:
            key = _key(self.space.condition(action), kept)
            sizes[key] = sizes.get(key, 0) + size
        totals = dict.fromkeys(sizes, 0.0)
        for candidate, score in zip(pool.candidates, scores, strict=True):
            key = _key(candidate.condition, kept) if candidate.condition is not None else None
            if key in totals:
                totals[key] += float(score)
        rewards = {}
        for action, _ in proposal:
            key = _key(self.space.condition(action), kept)
            rewards[action] = min(1.0, totals[key] / sizes[key]) if sizes[key] else 0.0
        return rewards

    def _mixed_rewards(self, pool: Pool, scores: np.ndarray, proposal: Sequence[tuple[int, int]], kept: frozenset[str]) -> dict[int, float]:
        """Per action: its mix's average of the per-arm rate (summed desirability of the pool
        candidates of its condition and that arm over those the arm generated for it)."""
        sizes: dict[tuple[_Key, str], int] = {}
        for action, size in proposal:
            key = _key(self.space.condition(action), kept)
            for arm, count in apportion(size, self.space.mix(action)).items():
                sizes[key, arm] = sizes.get((key, arm), 0) + count
        totals = dict.fromkeys(sizes, 0.0)
        for candidate, score in zip(pool.candidates, scores, strict=True):
            if candidate.condition is not None and (slot := (_key(candidate.condition, kept), candidate.provenance.arm or "")) in totals:
                totals[slot] += float(score)
        rewards = {}
        for action, _ in proposal:
            key = _key(self.space.condition(action), kept)
            rates = {arm: totals[key, arm] / sizes[key, arm] if sizes.get((key, arm)) else 0.0 for arm in self.space.mix(action)}
            rewards[action] = min(1.0, sum(share * rates[arm] for arm, share in self.space.mix(action).items()))
        return rewards

    def _add_rewards(self, index: int, rewards: dict[int, float]) -> None:
        for action, reward in rewards.items():
            self.history.rewards.setdefault(action, []).append(float(reward))
        self.history.rewarded.add(index)
        self.save()

    def _settle(self, before: int) -> None:
        """Reward 0 for earlier proposals that never reached ``select`` (every candidate rejected)."""
        for index in sorted(self.history.proposals):
            if index < before and index not in self.history.rewarded:
                logger.info("rl: iteration %d had no scored candidates; its conditions get reward 0", index)
                for action, _ in self.history.proposals[index]:
                    self.history.rewards.setdefault(action, []).append(0.0)
                self.history.rewarded.add(index)

    def _check_continues(self, index: int) -> None:
        later = sorted(i for i in self.history.proposals if i > index)
        if later or index in self.history.rewarded:
            raise CrystaloopError(
                f"policy checkpoint {self.path} already holds iterations up to {max([index, *later])} of campaign "
                f"{self.config.name!r}, but the campaign is proposing iteration {index}: it belongs to an earlier run "
                "under this name; remove it or use another campaign name"
            )

    # -- checkpoint
    def save(self) -> None:
        """Write the policy, optimiser state and history (atomically); nothing when in memory only."""
        if self.path is None:
            return
        meta = {
            "campaign": self.config.name,
            "config_hash": self.config.config_hash(),
            "actions": self.space.describe(),
            "settings": asdict(self.settings),
            "num_timesteps": int(self.model.num_timesteps),
            "n_updates": int(self.model._n_updates),
            "history": self.history.to_json(),
        }
        payload = {
            "format": FORMAT,
            "meta": json.dumps(meta),
            "policy": self.model.policy.state_dict(),
            "optimizer": self.model.policy.optimizer.state_dict(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        torch.save(payload, partial)
        os.replace(partial, self.path)

    def _load(self, path: Path) -> None:
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
            raise CrystaloopError(f"cannot read the RL policy checkpoint {path}: {exc}") from None
        found = payload.get("format") if isinstance(payload, dict) else None
        if found != FORMAT:
            raise CrystaloopError(f"{path} is not an RL policy checkpoint: format {found!r}, expected {FORMAT!r}")
        meta = json.loads(payload["meta"])
        if meta["config_hash"] != self.config.config_hash():
            raise CrystaloopError(
                f"policy checkpoint {path} belongs to config hash {meta['config_hash']!r}, campaign {self.config.name!r} "
                f"has {self.config.config_hash()!r}; remove it or use another campaign name"
            )
        if meta["actions"] != self.space.describe():
            raise CrystaloopError(f"policy checkpoint {path} has {len(meta['actions'])} actions, this campaign's space has {len(self.space)}")
        settings = PPOSettings(**meta["settings"])
        if settings != self.settings:
            logger.info("rl: %s was trained with %s; keeping those settings", path, settings)
            self.settings = settings
            self.model = make_ppo(self.env, settings, seed=self.config.seed)
        self.model.policy.load_state_dict(payload["policy"])
        self.model.policy.optimizer.load_state_dict(payload["optimizer"])
        self.model.num_timesteps = int(meta["num_timesteps"])
        self.model._n_updates = int(meta["n_updates"])
        self.history = _History.from_json(meta["history"])
        logger.info("rl: loaded policy %s (%d steps, iterations %s proposed)", path, self.model.num_timesteps, sorted(self.history.proposals))
