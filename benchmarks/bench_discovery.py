"""Discovery rate with statistical power: hits per 100 replayed-DFT oracle calls, random vs bo/al/rl and composition rules.

Pool-based variant of issue 19 (the MLIP-oracle variant is not run here). Pool: ``perov_5/train``
and ``perov_5/val`` together (3787 ABX3 cells). Oracle: :class:`~crystaloop.surrogates.oracles.replay.ReplayOracle`
replaying the dataset's DFT labels; every measured structure costs one call, the first
``initial`` ones (the same random draw for every strategy of a seed) included. Two campaigns:

* ``stable``: minimise ``heat_all``; a **hit** has heat_all ≤ 0.5 (perov_5's heat of formation,
  eV, the stability proxy);
* ``water``: the same stability plus ``dir_gap`` inside [1.5, 2.5] eV (a water-splitting window).

Each round *generates* ``generated`` structures from the pool with
:class:`~crystaloop.generator.replay.DatasetReplayGenerator` (drawn under the strategy's conditions;
structures already measured are screened out, as the diversity guard would) and the strategy
picks ``batch`` of them for the oracle. Strategies:

* ``random``: generate-and-screen at random (the reference);
* ``rule-tolerance``, ``rule-electroneg``: no-learning composition rules a sceptic tries first,
  greedy over the generated batch: Goldschmidt tolerance factor closest to 1 (A = the larger
  cation by pymatgen's average cationic radius, anion radii of O²⁻, N³⁻, F⁻, S²⁻), or the largest
  electronegativity difference (mean Pauling χ of the anion sites minus that of the cations);
* ``al`` (UCB, β = 1), ``bo`` (qLogNEI / qLogNEHVI), ``rl`` (PPO over anion chemistries: the
  action is a chemical system, all cations plus one of O, N, N-O, O-S, F-O, F-N-O; two
  conditions per round; picks by al). The learning strategies have **no pretrained prior**:
  the shipped perov_5 ensembles were trained on ``perov_5/train``, most of this pool, so their
  predictions would leak labels. The strategies' residual GP learns from the campaign's own
  labels over the loop's selection features (:func:`~crystaloop.loop.guards.fingerprints.selection_features`:
  composition + distance histogram + the composition's element-property statistics, what the
  engine feeds the strategies without a surrogate); rl's reward reads that GP's posterior.
  Until issue 19's fix the features had no element properties (``FEATURES`` names the version;
  a result of another version is not read back).

Budget: the calls one campaign needs so that, over all seeds, a two-sided two-proportion test at
α = 0.05 detects a 3× rate ratio over the pool's base rate with 80 % power (row ``calls_needed``;
the per-seed budget is that over the seeds, at least ``min_calls``). Reported per strategy: hits
per 100 calls (mean over seeds, bootstrap 95 % interval over seeds), the ratio of mean rates to
random with a paired bootstrap interval, and a one-sided Wilcoxon signed-rank test over seeds
against random; for the learning strategies the same against the better composition rule. Every (campaign, strategy, seed) result is written to
``runs/bench/discovery/<sizes>/<campaign>/<strategy>-s<seed>.json`` and read back when its
settings match, so an interrupted run resumes.

Run ``python -m benchmarks.bench_discovery`` (``--quick``: the stable campaign, 2 seeds, 30 calls, under 2 minutes;
``--campaigns``, ``--strategies``: subsets). With ``CRYSTALOOP_DISCOVERY_CACHED_ONLY=1`` a run
only reads results back: a (campaign, strategy) with a seed not yet on disk is left out of the
table (logged), so ``run_all`` can record what background runs finished.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from botorch.exceptions.warnings import InputDataWarning
from scipy import stats

from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets import CrystalDataset, load_dataset
from crystaloop.data.elements import element_presence
from crystaloop.data.records import Condition
from crystaloop.generator.replay import DatasetReplayGenerator
from crystaloop.loop.config import Budget, CampaignConfig, Constraints, Objective
from crystaloop.loop.guards.fingerprints import selection_features
from crystaloop.loop.strategies import (
    ALConfig,
    ALStrategy,
    BOConfig,
    BOStrategy,
    Labels,
    Pool,
    RandomStrategy,
    RLConfig,
    StrategySettings,
    StrategyState,
)
from crystaloop.loop.strategies.posterior import ResidualGP
from crystaloop.surrogates.oracles.replay import ReplayOracle

logger = logging.getLogger("crystaloop.benchmarks.discovery")

SPLITS = ("perov_5/train", "perov_5/val")
RUNS = Path("runs/bench/discovery")
STABLE_HEAT = 0.5  # eV, heat_all threshold of a hit
GAP_WINDOW = (1.5, 2.5)  # eV, dir_gap window of the water campaign
ANIONS = ("O", "N", "F", "S")
ANION_SETS = (("O",), ("N",), ("N", "O"), ("O", "S"), ("F", "O"), ("F", "N", "O"))
ANION_RADIUS = {"O": ("O", -2), "N": ("N", -3), "F": ("F", -1), "S": ("S", -2)}
STABILITY = Objective(property="heat_all", goal="minimise", threshold=STABLE_HEAT, units="eV")
CAMPAIGNS: dict[str, tuple[Objective, ...]] = {
    "stable": (STABILITY,),
    "water": (STABILITY, Objective(property="dir_gap", goal="target", window=GAP_WINDOW, units="eV")),
}
STRATEGIES = ("random", "rule-tolerance", "rule-electroneg", "al", "bo", "rl")
LEARNING = ("al", "bo", "rl")
PRIOR_SUFFIX = "-prior"
"""A strategy named ``<name>-prior`` is ``<name>`` handed the pool's pretrained prior (:attr:`DiscoveryPool.prior`)."""
FEATURES = "selection-v2+element-offsets"  # version of the learning strategies' GP inputs (v1: fingerprints only; v2: + composition descriptors; + the residual GP's per-element term)


@dataclass(frozen=True)
class Sizes:
    """Seeds and budget of every campaign."""

    tag: str
    seeds: tuple[int, ...]
    initial: int
    batch: int
    generated: int
    min_calls: int
    max_calls: int | None = None
    campaigns: tuple[str, ...] = tuple(CAMPAIGNS)


FULL = Sizes("full", seeds=tuple(range(10)), initial=10, batch=20, generated=200, min_calls=100)
QUICK = Sizes("quick", seeds=(0, 1), initial=10, batch=10, generated=100, min_calls=30, max_calls=30, campaigns=("stable",))


# ---------------------------------------------------------------------------- statistics
def calls_for_ratio(base_rate: float, ratio: float = 3.0, alpha: float = 0.05, power: float = 0.8) -> int:
    """Oracle calls per arm for a two-sided two-proportion z-test at ``alpha`` to detect
    ``ratio × base_rate`` against ``base_rate`` with ``power`` (normal approximation)."""
    p0, p1 = base_rate, min(ratio * base_rate, 1.0)
    if not 0 < p0 < p1:
        return 0
    mean = 0.5 * (p0 + p1)
    z_alpha, z_power = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    spread = z_alpha * math.sqrt(2 * mean * (1 - mean)) + z_power * math.sqrt(p0 * (1 - p0) + p1 * (1 - p1))
    return math.ceil(spread**2 / (p1 - p0) ** 2)


def bootstrap_mean(values: Sequence[float], *, resamples: int = 10_000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap 95 % interval over ``values`` (one per seed)."""
    x = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(len(x), size=(resamples, len(x)))].mean(axis=1)
    return float(x.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def bootstrap_ratio(values: Sequence[float], baseline: Sequence[float], *, resamples: int = 10_000, seed: int = 0) -> tuple[float, float, float]:
    """Ratio of means ``values / baseline`` and its paired bootstrap 95 % interval (seeds
    resampled together); ``inf`` where the resampled baseline mean is 0."""
    x, y = np.asarray(values, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    rng = np.random.default_rng(seed)
    rows = rng.integers(len(x), size=(resamples, len(x)))
    num, den = x[rows].mean(axis=1), y[rows].mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.where(num > 0, np.inf, 1.0))
    point = x.mean() / y.mean() if y.mean() > 0 else (math.inf if x.mean() > 0 else 1.0)
    return float(point), float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))


def paired_wilcoxon(values: Sequence[float], baseline: Sequence[float]) -> float:
    """One-sided (greater) Wilcoxon signed-rank p-value over seeds; 1 when all pairs tie."""
    d = np.asarray(values, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    if not np.any(d != 0):
        return 1.0
    return float(stats.wilcoxon(values, baseline, alternative="greater", zero_method="wilcox").pvalue)


# ---------------------------------------------------------------------------- pool
@dataclass
class DiscoveryPool:
    """The pool's crystals, labels, features and replay components."""

    crystals: list[Crystal]
    values: dict[str, np.ndarray]
    features: np.ndarray
    elements: np.ndarray
    """(n, 119) element presence of every pool crystal (the residual GP's per-element term)."""
    oracle: ReplayOracle
    generator: DatasetReplayGenerator
    prior: dict[str, np.ndarray] = field(default_factory=dict)
    """Objective property → (n, 2) a pretrained surrogate's mean and std at each pool structure
    (what the ``-prior`` strategies see; empty: no prior)."""

    @classmethod
    def load(cls, splits: Sequence[str] = SPLITS) -> DiscoveryPool:
        datasets = [load_dataset(s) for s in splits]
        properties = ("heat_all", "dir_gap")
        combined = CrystalDataset(
            name="+".join(splits),
            crystals=[c for d in datasets for c in d.crystals],
            ids=[i for d in datasets for i in d.ids],
            sources=[s for d in datasets for s in d.sources],
            properties={p: np.concatenate([d.properties[p] for d in datasets]) for p in properties},
        )
        return cls(
            crystals=combined.crystals,
            values=combined.properties,
            features=selection_features(combined.crystals),
            elements=element_presence(combined.crystals),
            oracle=ReplayOracle(combined, properties),
            generator=DatasetReplayGenerator.from_dataset(combined),
        )

    def predictions(self, rows: Sequence[int], objectives: Sequence[Objective], *, use_prior: bool) -> np.ndarray:
        """(len(rows), m, 2) prior mean and std of each objective at pool ``rows``; NaN where there
        is no prior for the objective or ``use_prior`` is false."""
        out = np.full((len(rows), len(objectives), 2), np.nan)
        if use_prior:
            index = np.asarray(rows, dtype=np.int64)
            for j, objective in enumerate(objectives):
                if objective.property in self.prior:
                    out[:, j] = self.prior[objective.property][index]
        return out

    def hits(self, objectives: Sequence[Objective]) -> np.ndarray:
        """(n,) whether each pool structure is a hit of the campaign with ``objectives``."""
        out = np.ones(len(self.crystals), dtype=bool)
        for objective in objectives:
            v = self.values[objective.property]
            out &= np.isfinite(v) & np.array([objective.satisfied(x) if math.isfinite(x) else False for x in v])
        return out


def anion_systems(crystals: Sequence[Crystal]) -> tuple[tuple[str, ...], ...]:
    """All cations of the pool plus each anion set of :data:`ANION_SETS` (rl's chemical systems)."""
    cations = sorted({e for c in crystals for e in c.elements} - set(ANIONS))
    return tuple(tuple(cations) + anions for anions in ANION_SETS)


# ---------------------------------------------------------------------------- composition rules
def _sites(crystal: Crystal) -> tuple[list[str], list[str]]:
    symbols = [e for e, n in crystal.composition.items() for _ in range(n)]
    return [s for s in symbols if s not in ANIONS], [s for s in symbols if s in ANIONS]


@functools.cache
def _cation_radius(symbol: str) -> float:
    from pymatgen.core import Element

    return float(Element(symbol).average_cationic_radius) or float(Element(symbol).atomic_radius)


@functools.cache
def _anion_radius(symbol: str) -> float:
    from pymatgen.core import Species

    element, charge = ANION_RADIUS[symbol]
    return float(Species(element, charge).ionic_radius)


@functools.cache
def _pauling(symbol: str) -> float:
    from pymatgen.core import Element

    return float(Element(symbol).X)


def tolerance_factor(crystal: Crystal) -> float:
    """Goldschmidt t = (r_A + r_X) / (√2 (r_B + r_X)); A the larger cation, r_X the mean anion radius."""
    cations, anions = _sites(crystal)
    if len(cations) < 2 or not anions:
        return math.nan
    radii = sorted((_cation_radius(s) for s in cations), reverse=True)
    r_x = float(np.mean([_anion_radius(s) for s in anions]))
    return (radii[0] + r_x) / (math.sqrt(2.0) * (float(np.mean(radii[1:])) + r_x))


def electronegativity_difference(crystal: Crystal) -> float:
    """Mean Pauling χ of the anion sites minus that of the cation sites."""
    cations, anions = _sites(crystal)
    if not cations or not anions:
        return math.nan
    return float(np.mean([_pauling(s) for s in anions]) - np.mean([_pauling(s) for s in cations]))


class CompositionRule:
    """A no-learning baseline: greedy top ``k`` of a score of the composition (higher first)."""

    def __init__(self, name: str, score: Callable[[Crystal], float]) -> None:
        self.name = name
        self._score = score
        self._cache: dict[str, float] = {}

    def scores(self, pool: Pool) -> np.ndarray:
        out = []
        for candidate in pool.candidates:
            formula = candidate.crystal.reduced_formula
            if formula not in self._cache:
                value = self._score(candidate.crystal)
                self._cache[formula] = value if math.isfinite(value) else -math.inf
            out.append(self._cache[formula])
        return np.asarray(out)

    def select(self, pool: Pool, predictions: np.ndarray, k: int) -> np.ndarray:
        order = np.argsort(-self.scores(pool), kind="stable")
        return np.sort(order[: min(k, len(pool))])


RULES: dict[str, Callable[[Crystal], float]] = {
    "rule-tolerance": lambda c: -abs(tolerance_factor(c) - 1.0),
    "rule-electroneg": electronegativity_difference,
}


# ---------------------------------------------------------------------------- campaigns
def _campaign_config(campaign: str, seed: int, sizes: Sizes, systems: tuple[tuple[str, ...], ...], calls: int,
                     objectives: Sequence[Objective] | None = None) -> CampaignConfig:
    rounds = max(1, math.ceil((calls - sizes.initial) / sizes.batch))
    return CampaignConfig(
        name=f"discovery-{campaign}-s{seed}",
        objectives=tuple(objectives or CAMPAIGNS[campaign]),
        constraints=Constraints(chemical_systems=systems),
        budget=Budget(iterations=rounds, candidates_per_iteration=sizes.generated, oracle_calls_per_iteration=sizes.batch),
        strategy=RLConfig(rl_policy_dir=None, rl_target_offsets=(0.0,), rl_steps=32, mc_samples=32, min_labels=4),
        seed=seed,
    )


def uses_prior(name: str) -> bool:
    """Whether strategy ``name`` is handed the pool's prior (``-prior`` variants and ``surrogate-greedy``)."""
    return name.endswith(PRIOR_SUFFIX) or name == "surrogate-greedy"


def make_strategy(name: str, config: CampaignConfig):  # noqa: ANN201 - any object with the Strategy port's select
    """The strategy ``name`` for one campaign (all share the config's GP settings and seed)."""
    name = name.removesuffix(PRIOR_SUFFIX)
    if name == "random":
        return RandomStrategy(seed=config.seed)
    if name == "surrogate-greedy":
        return PriorGreedy(config.objectives)
    if name in RULES:
        return CompositionRule(name, RULES[name])
    if name == "al":
        return ALStrategy(config.objectives, ALConfig.ranking(config.strategy, acquisition="ucb", beta=1.0), seed=config.seed)
    if name == "bo":
        return BOStrategy(config.objectives, BOConfig(**config.strategy.model_dump(include=set(StrategySettings.model_fields))), seed=config.seed)
    if name == "rl":
        from crystaloop.loop.strategies.rl import RLStrategy

        return RLStrategy(config)
    raise ValueError(f"unknown strategy {name!r}; valid: {', '.join(STRATEGIES)}, surrogate-greedy, and <name>{PRIOR_SUFFIX} of each")


class PriorGreedy:
    """The no-learning-in-the-loop baseline of a pretrained surrogate: greedy top ``k`` by its
    predicted mean of the first objective (lowest first when minimised), never updated by the
    campaign's labels: screening with a shipped model."""

    def __init__(self, objectives: Sequence[Objective]) -> None:
        self.sign = 1.0 if objectives[0].goal == "minimise" else -1.0

    def select(self, pool: Pool, predictions: np.ndarray, k: int) -> np.ndarray:
        mean = predictions[:, 0, 0]
        if not np.isfinite(mean).all():
            raise ValueError("surrogate-greedy needs the pool's prior (DiscoveryPool.prior) for the first objective")
        order = np.argsort(self.sign * mean, kind="stable")
        return np.sort(order[: min(k, len(pool))])


def _measure(pool: DiscoveryPool, index: int, objectives: Sequence[Objective]) -> list[float]:
    values = {m.property: m.value for m in pool.oracle.evaluate([pool.crystals[index]]) if m.status == "ok"}
    return [float(values[o.property]) if values.get(o.property) is not None else math.nan for o in objectives]


def run_campaign(pool: DiscoveryPool, campaign: str, strategy_name: str, seed: int, sizes: Sizes, calls: int, systems: tuple[tuple[str, ...], ...],
                 objectives: Sequence[Objective] | None = None) -> list[int]:
    """Pool indices in the order the campaign measured them (``calls`` of them); ``objectives``
    default to those of :data:`CAMPAIGNS` ``[campaign]``."""
    config = _campaign_config(campaign, seed, sizes, systems, calls, objectives)
    objectives = config.objectives
    strategy = make_strategy(strategy_name, config)
    use_prior = uses_prior(strategy_name)
    base_name = strategy_name.removesuffix(PRIOR_SUFFIX)
    index_of = {id(c): i for i, c in enumerate(pool.crystals)}
    order = [int(i) for i in np.random.default_rng([seed, 19]).choice(len(pool.crystals), size=sizes.initial, replace=False)]
    values = [_measure(pool, i, objectives) for i in order]
    iteration = 0
    while len(order) < calls:
        state = StrategyState(config, iteration, config.iteration_seed(iteration), n_conditions=2)
        conditions: list[Condition | None] = strategy.propose(state) if base_name == "rl" else [None]
        measured = set(order)
        candidates, rows = [], []
        for j, condition in enumerate(conditions):
            size = sizes.generated // len(conditions) + (j < sizes.generated % len(conditions))
            for candidate in pool.generator.sample(size, condition, seed=config.iteration_seed(iteration, stream=1 + j)):
                i = index_of[id(candidate.crystal)]
                if i in measured or i in rows:
                    continue
                rows.append(i)
                candidates.append(replace(candidate, provenance=candidate.provenance.model_copy(update={"campaign": config.name, "iteration": iteration})))
        labels = Labels(pool.features[order], np.asarray(values), pool.predictions(order, objectives, use_prior=use_prior)[..., 0],
                        pool.elements[order])
        batch = Pool(candidates, pool.features[rows], labels, elements=pool.elements[rows])
        predictions = pool.predictions(rows, objectives, use_prior=use_prior)
        if base_name == "rl":
            gp = ResidualGP.for_strategy(config.strategy, seed).fit(labels)
            mean, std = gp.posterior(pool.features[rows], predictions[..., 0], predictions[..., 1], pool.elements[rows])
            strategy.record_rewards(batch, np.stack([mean, std], axis=-1))
        picks = strategy.select(batch, predictions, min(sizes.batch, calls - len(order)))
        for p in picks:
            order.append(rows[int(p)])
            values.append(_measure(pool, rows[int(p)], objectives))
        iteration += 1
    return order


def _result_path(sizes: Sizes, campaign: str, strategy: str, seed: int) -> Path:
    return RUNS / sizes.tag / campaign / f"{strategy}-s{seed}.json"


def campaign_result(pool: DiscoveryPool, campaign: str, strategy: str, seed: int, sizes: Sizes, calls: int, systems: tuple[tuple[str, ...], ...], hits: np.ndarray, *,
                    cached_only: bool = False, objectives: Sequence[Objective] | None = None, extra_settings: dict | None = None) -> dict | None:
    """One campaign's result, read back from its JSON file when the settings match, else run and
    written (``cached_only``: else ``None``). ``extra_settings`` (e.g. the prior's name) join the
    settings a saved result must match."""
    path = _result_path(sizes, campaign, strategy, seed)
    settings = {"sizes": asdict(sizes), "calls": calls, "campaign": campaign, "strategy": strategy, "seed": seed, **(extra_settings or {})}
    if strategy.removesuffix(PRIOR_SUFFIX) in LEARNING:
        settings["features"] = FEATURES
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("settings") == json.loads(json.dumps(settings)):
            return saved
    if cached_only:
        return None
    started = time.perf_counter()
    order = run_campaign(pool, campaign, strategy, seed, sizes, calls, systems, objectives)
    result = {
        "settings": settings,
        "order": order,
        "calls": len(order),
        "hits": int(hits[order].sum()),
        "seconds": time.perf_counter() - started,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(result))
    partial.replace(path)
    logger.info("%s %s seed %d: %d hits in %d calls (%.0f s)", campaign, strategy, seed, result["hits"], result["calls"], result["seconds"])
    return result


def _compare(values: Sequence[float], baseline: Sequence[float]) -> tuple[str, float]:
    """Ratio of mean rates with its paired bootstrap interval, and the one-sided Wilcoxon p."""
    ratio, low, high = bootstrap_ratio(values, baseline)
    return f"{ratio:.2f} [{low:.2f}, {high:.2f}]", paired_wilcoxon(values, baseline)


def _budget(base_rate: float, sizes: Sizes) -> tuple[int, int]:
    """(calls needed per arm over all seeds, calls per campaign)."""
    needed = calls_for_ratio(base_rate)
    per_seed = max(sizes.min_calls, math.ceil(needed / len(sizes.seeds)))
    per_seed = sizes.initial + sizes.batch * math.ceil((per_seed - sizes.initial) / sizes.batch)
    return needed, min(per_seed, sizes.max_calls) if sizes.max_calls else per_seed


def campaign_rows(pool: DiscoveryPool, campaign: str, objectives: Sequence[Objective], strategies: Sequence[str], sizes: Sizes,
                  systems: tuple[tuple[str, ...], ...], *, cached_only: bool = False, extra_settings: dict | None = None,
                  learning: Sequence[str] = LEARNING, screening: str | None = None) -> list[dict]:
    """The table rows of one campaign (one per strategy): every seed run or read back, rates,
    intervals and paired tests against random and against the better composition rule
    (``learning`` names the strategies compared with the rule); with ``screening`` (a strategy
    name, e.g. ``surrogate-greedy``), the ``learning`` strategies are also compared with it
    (``vs_screening``, ``wilcoxon_p_screening``)."""
    hits = pool.hits(objectives)
    base_rate = float(hits.mean())
    needed, calls = _budget(base_rate, sizes)
    rates: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}
    missing: set[str] = set()
    for seed in sizes.seeds:
        for strategy in strategies:
            result = campaign_result(pool, campaign, strategy, seed, sizes, calls, systems, hits, cached_only=cached_only,
                                     objectives=objectives, extra_settings=extra_settings)
            if result is None:
                missing.add(strategy)
                continue
            rates.setdefault(strategy, []).append(100.0 * result["hits"] / result["calls"])
            seconds[strategy] = seconds.get(strategy, 0.0) + result["seconds"]
    for strategy in sorted(missing):
        logger.warning("%s %s: %d of %d seeds on disk; left out of the table", campaign, strategy, len(rates.pop(strategy, [])), len(sizes.seeds))
        seconds.pop(strategy, None)
    baseline = rates.get("random")
    rules = [r for r in RULES if r in rates]
    best_rule = max(rules, key=lambda r: np.mean(rates[r])) if rules else None
    rows = []
    for strategy, values in rates.items():
        mean, low, high = bootstrap_mean(values)
        row = {
            "campaign": campaign,
            "strategy": strategy,
            "pool": len(pool.crystals),
            "pool_hits": int(hits.sum()),
            "base_per_100": 100.0 * base_rate,
            "calls_needed": needed,
            "calls_per_seed": calls,
            "seeds": len(values),
            "hits_per_100": f"{mean:.2f} [{low:.2f}, {high:.2f}]",
            "per_seed": " ".join(f"{v:.3g}" for v in values),
        }
        row["ratio_to_random"], row["wilcoxon_p"] = _compare(values, baseline) if baseline is not None and strategy != "random" else ("1", "-")
        compared = best_rule is not None and strategy in learning
        row["vs_best_rule"], row["wilcoxon_p_rule"] = _compare(values, rates[best_rule]) if compared else ("-", "-")
        if compared:
            row["vs_best_rule"] = f"{row['vs_best_rule']} ({best_rule})"
        if screening is not None:
            against = screening in rates and strategy in learning and strategy != screening
            row["vs_screening"], row["wilcoxon_p_screening"] = _compare(values, rates[screening]) if against else ("-", "-")
        row["s_per_campaign"] = seconds[strategy] / len(values)
        rows.append(row)
    return rows


def quiet_strategy_logs() -> None:
    """One torch thread, and no per-round lines from the strategies and GP heads."""
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=InputDataWarning)
    for name in ("crystaloop.loop.strategies.rl", "crystaloop.surrogates.gp"):  # one line per round otherwise
        logging.getLogger(name).setLevel(logging.WARNING)


def run(quick: bool = False, strategies: Sequence[str] | None = None, campaigns: Sequence[str] | None = None) -> list[dict]:
    """One row per (campaign, strategy); see the module docstring."""
    quiet_strategy_logs()
    sizes = QUICK if quick else FULL
    cached_only = os.environ.get("CRYSTALOOP_DISCOVERY_CACHED_ONLY", "") == "1"
    pool = DiscoveryPool.load()
    systems = anion_systems(pool.crystals)
    rows = []
    for campaign in campaigns or sizes.campaigns:
        rows += campaign_rows(pool, campaign, CAMPAIGNS[campaign], strategies or STRATEGIES, sizes, systems, cached_only=cached_only)
    return rows


if __name__ == "__main__":
    from benchmarks.run_all import run_standalone

    run_standalone(run, __doc__, {
        "--strategies": {"nargs": "*", "default": None, "help": f"subset of {', '.join(STRATEGIES)}"},
        "--campaigns": {"nargs": "*", "default": None, "help": f"subset of {', '.join(CAMPAIGNS)}"},
    })
