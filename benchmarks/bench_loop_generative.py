"""Generative loop: oracle-verified hits per 100 CHGNet calls for random, bo, al and rl; guard ablation.

Campaign: ``examples/perovskite-stiff.yaml`` (maximise the CHGNet bulk modulus, hit ≥ 150 GPa;
e_above_hull ≤ 0.1 eV/atom; 5-atom cells), chosen because the CHGNet oracle measures every one
of its objectives (the water-splitting campaign's band gap is a surrogate prediction only). The
shipped ``perov_5`` generator (copied once per run, so every campaign samples from the same
weights; its sha256 is logged) samples with 100 DDIM steps; the shipped ``perov_5-heat_ref``
ensemble scores (embeddings, OOD, disagreement). Every campaign runs through
:func:`~crystaloop.loop.campaign.run_campaign` in its own temporary SQLite store, its own RL
policy folder and its own CHGNet result cache, which starts as a copy of one cache holding only
the elemental hull references (relaxed once per run), so no campaign's hull sees another
campaign's structures.

A **hit** is an evaluated candidate that passed every guard that ran, whose CHGNet bulk modulus
is ≥ 150 GPa and whose e_above_hull is ≤ 0.1 eV/atom (applied even when the synthesizability
guard is switched off), that is **novel** (its canonical hash is not one of ``perov_5/train``,
the generator's training split, and its relaxed structure matches no training structure of the
same reduced formula under pymatgen's StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)) and
**unique** (it matches no earlier hit of the same campaign). Hashes of the training split are
also handed to the diversity guard (``Components.known_ids``), so exact copies of training
crystals are refused before selection. ``engine_sun`` is the engine's own S.U.N. count
(:mod:`crystaloop.loop.sun`: generated, not relaxed, structures; bulk modulus not required).

1. Strategies: random, bo, al and rl with the same budget and the same seeds, in one run.
2. Guard ablation: the random campaign (seed 0) with all guards on (the row of part 1) and with
   each guard switched off in turn (``guards.<name>.enabled: false``). Generation is seeded by
   the campaign seed only, so every variant generates the same crystals; a variant's cache
   starts as a copy of the all-on campaign's cache (candidates picked by both cost nothing
   twice; the hull then also holds the all-on run's structures, so its e_above_hull values can
   only be stricter). Reported: what the guard stopped in the all-on run and, with it off, how
   many of those entered the pool and reached the oracle, with their outcome.

Run ``python -m benchmarks.bench_loop_generative`` (``--quick``: a smoke run, not a result: one
seed, 2 iterations of 8 candidates and 2 oracle calls, strategies random and rl, one guard off).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import shutil
import sqlite3
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets import load_dataset
from crystaloop.data.records import Candidate, CandidateStatus
from crystaloop.data.store import CandidateStore
from crystaloop.loop.campaign import iteration_candidates, run_campaign
from crystaloop.loop.components import build_components
from crystaloop.loop.config import CampaignConfig, load_campaign_config
from crystaloop.loop.report import IterationReport
from crystaloop.loop.strategies import STRATEGY_CHOICES

logger = logging.getLogger("crystaloop.benchmarks.loop_generative")

CONFIG = Path(__file__).resolve().parents[1] / "examples" / "perovskite-stiff.yaml"
TRAINING = "perov_5/train"
STRATEGIES = ("random", "bo", "al", "rl")
GUARDS = ("validity", "synthesizability", "exploitation", "diversity")
SAMPLER = {"steps": 100, "method": "ddim"}
MAX_E_ABOVE_HULL = 0.1  # eV/atom, part of the hit definition whatever the guards say
_PICKS = (CandidateStatus.EVALUATED, CandidateStatus.FAILED)
_KEPT = (CandidateStatus.SCORED, CandidateStatus.SELECTED, *_PICKS)


@dataclass(frozen=True)
class Sizes:
    """Budget of every campaign and the seeds of part 1."""

    iterations: int
    candidates: int
    calls: int
    seeds: tuple[int, ...]

    @property
    def label(self) -> str:
        return f"{self.iterations} it × {self.candidates} gen, {self.calls} calls/it"


FULL = Sizes(iterations=3, candidates=32, calls=4, seeds=(0, 1, 2))
QUICK = Sizes(iterations=2, candidates=8, calls=2, seeds=(0,))
QUICK_STRATEGIES = ("random", "rl")  # random is every ablation's reference; rl the other path with its own state
QUICK_GUARDS = ("validity",)


@dataclass
class Outcome:
    """What one campaign produced, read back from its store."""

    name: str
    folder: Path
    seconds: float
    candidates: dict[str, Candidate] = field(default_factory=dict)
    reports: list[IterationReport] = field(default_factory=list)
    hits: list[str] = field(default_factory=list)
    not_novel: int = 0
    repeats: int = 0

    @property
    def picks(self) -> list[Candidate]:
        return [c for c in self.candidates.values() if c.status in _PICKS]

    def measured(self, candidate: Candidate) -> dict[str, float]:
        return {m.property: float(m.value) for m in candidate.measurements if m.status == "ok" and m.value is not None}


# ---------------------------------------------------------------------------- structure matching
def _matcher():  # noqa: ANN202 - a pymatgen StructureMatcher
    from crystaloop.data.matching import structure_matcher

    return structure_matcher("same_structure")  # novelty and uniqueness of hits


def _matches(matcher, a: Crystal, b: Crystal) -> bool:  # noqa: ANN001
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return bool(matcher.fit(a.to_pymatgen(), b.to_pymatgen()))
        except Exception:  # pymatgen raises on some pathological cells: no match
            return False


@dataclass
class TrainingSet:
    """The generator's training crystals: canonical hashes and structures by reduced formula."""

    hashes: set[str]
    by_formula: dict[str, list[Crystal]]

    @classmethod
    def load(cls, spec: str = TRAINING) -> TrainingSet:
        dataset = load_dataset(spec)
        by_formula: dict[str, list[Crystal]] = {}
        for crystal in dataset.crystals:
            by_formula.setdefault(crystal.reduced_formula, []).append(crystal)
        return cls({c.canonical_hash() for c in dataset.crystals}, by_formula)

    def novel(self, generated: Crystal, relaxed: Crystal, matcher) -> bool:  # noqa: ANN001
        if generated.canonical_hash() in self.hashes or relaxed.canonical_hash() in self.hashes:
            return False
        same = self.by_formula.get(relaxed.reduced_formula, [])
        return not any(_matches(matcher, relaxed, known) for known in same)


# ---------------------------------------------------------------------------- campaigns
def _config(base: CampaignConfig, name: str, strategy: str, seed: int, off: str | None, sizes: Sizes, folder: Path) -> CampaignConfig:
    payload = base.model_dump(mode="json")
    payload.update(name=name, seed=seed, store_url=f"sqlite:///{folder / 'store.db'}")
    payload["budget"] = {"iterations": sizes.iterations, "candidates_per_iteration": sizes.candidates, "oracle_calls_per_iteration": sizes.calls}
    payload["strategy"] = _strategy_payload(payload["strategy"], strategy, folder)
    payload["generator"] = {**payload["generator"], **SAMPLER}
    payload["oracle"] = {**payload["oracle"], "cache_url": f"sqlite:///{folder / 'oracle.db'}"}
    if off is not None:
        payload["guards"][off] = {**payload["guards"][off], "enabled": False}
    return CampaignConfig.model_validate(payload)


def _strategy_payload(base: dict, kind: str, folder: Path) -> dict:
    """``base``'s strategy settings that ``kind`` accepts, as ``kind`` (a setting of another kind is refused at load)."""
    fields = STRATEGY_CHOICES[kind].model_fields
    settings = {key: value for key, value in base.items() if key in fields and key != "kind"}
    if "rl_policy_dir" in fields:
        settings["rl_policy_dir"] = str(folder / "rl")
    return {"kind": kind, **settings}


def _reference_cache(base: CampaignConfig, folder: Path) -> Path:
    """A CHGNet cache holding the elemental references of every species the generator knows."""
    from ase.data import chemical_symbols

    from crystaloop.generator.shipped import resolve_generator_checkpoint
    from crystaloop.surrogates.hull import EnergyAboveHull

    path = folder / "references.db"
    config = base.model_copy(update={"oracle": base.oracle.model_copy(update={"cache_url": f"sqlite:///{path}"})})
    mlip = build_components(config).oracle
    checkpoint = torch.load(resolve_generator_checkpoint(base.generator.checkpoint or "perov_5"), weights_only=True, map_location="cpu")
    hull = EnergyAboveHull(mlip.oracle)
    for z in checkpoint["normalisation"]["species"].tolist():
        hull.reference(chemical_symbols[int(z)])
    return path


def _pin_generator(base: CampaignConfig, root: Path) -> CampaignConfig:
    """Copy the generator checkpoint into ``root`` so every campaign of the run samples from the
    same weights, even if the shipped file is replaced meanwhile; logs its sha256."""
    from crystaloop.generator.shipped import resolve_generator_checkpoint

    pinned = root / "generator.pt"
    shutil.copyfile(resolve_generator_checkpoint(base.generator.checkpoint or "perov_5"), pinned)
    digest = hashlib.sha256(pinned.read_bytes()).hexdigest()
    logger.info("generator %s pinned: sha256 %s", base.generator.checkpoint, digest[:16])
    return base.model_copy(update={"generator": base.generator.model_copy(update={"checkpoint": str(pinned)})})


def _copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of an SQLite file in WAL mode (the backup API reads the WAL too)."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()


def _run(base: CampaignConfig, name: str, strategy: str, seed: int, off: str | None, sizes: Sizes, root: Path, cache: Path, training: TrainingSet) -> Outcome:
    folder = root / name
    folder.mkdir(parents=True)
    _copy_sqlite(cache, folder / "oracle.db")
    config = _config(base, name, strategy, seed, off, sizes, folder)
    components = build_components(config)
    components.known_ids = set(training.hashes)
    with CandidateStore(config.store_url) as store:
        started = time.perf_counter()
        reports = run_campaign(components, store, config)
        seconds = time.perf_counter() - started
        outcome = Outcome(name, folder, seconds, {c.id: c for c in iteration_candidates(store, config.name)}, reports)
    _find_hits(outcome, config, components.oracle.oracle, training)
    logger.info("%s: %d calls, %d hits, %.0f s", name, len(outcome.picks), len(outcome.hits), seconds)
    return outcome


def _find_hits(outcome: Outcome, config: CampaignConfig, oracle, training: TrainingSet) -> None:  # noqa: ANN001
    """Hits of the module docstring's definition; counts picks that are not novel or repeat an earlier pick."""
    matcher = _matcher()
    kept: list[Crystal] = []
    hits: list[Crystal] = []
    for candidate in sorted(outcome.picks, key=lambda c: (c.provenance.iteration or 0, c.id)):
        relaxation = oracle.relax([candidate.crystal])[0]  # from the campaign's cache
        relaxed = relaxation.final if relaxation.status == "ok" and relaxation.final is not None else candidate.crystal
        novel = training.novel(candidate.crystal, relaxed, matcher)
        repeat = any(_matches(matcher, relaxed, other) for other in kept)
        outcome.not_novel += not novel
        outcome.repeats += repeat
        kept.append(relaxed)
        values = outcome.measured(candidate)
        good = (
            candidate.status == CandidateStatus.EVALUATED
            and all(v.ok for v in candidate.verdicts)
            and values.get("e_above_hull", float("inf")) <= MAX_E_ABOVE_HULL
            and all(o.property in values and o.satisfied(values[o.property]) for o in config.objectives)
        )
        if good and novel and not any(_matches(matcher, relaxed, h) for h in hits):
            hits.append(relaxed)
            outcome.hits.append(candidate.id)


# ---------------------------------------------------------------------------- rows
def _failing(candidate: Candidate) -> set[str]:
    return {v.guard for v in candidate.verdicts if not v.ok}


def _failure_kinds(candidate: Candidate) -> list[str]:
    """What failed in one oracle call: the relaxation (then everything fails), else the hull
    (an element without a CHGNet reference) and/or the EOS fit."""
    failed = {m.property for m in candidate.measurements if m.status != "ok"}
    if "energy_per_atom" in failed or (candidate.status == CandidateStatus.FAILED and not failed):
        return ["relax"]
    return [{"e_above_hull": "hull", "bulk_modulus": "eos"}.get(p, p) for p in sorted(failed)]


def _summary(counter: Counter) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(counter.items())) or "-"


def _counts(outcome: Outcome) -> dict:
    picks = outcome.picks
    failures = [_failure_kinds(c) for c in picks]
    moduli = [outcome.measured(c)["bulk_modulus"] for c in picks if "bulk_modulus" in outcome.measured(c)]
    rejected: Counter[str] = Counter()
    for report in outcome.reports:
        rejected.update(report.rejected_by_reason)
    return {
        "generated": len(outcome.candidates),
        "rejected": sum(rejected.values()),
        "rejected_by": rejected,
        "oracle_calls": len(picks),
        "failed_calls": sum(bool(f) for f in failures),
        "failed_by": Counter(kind for f in failures for kind in f),
        "stable": sum(outcome.measured(c).get("e_above_hull", float("inf")) <= MAX_E_ABOVE_HULL for c in picks),
        "engine_verified": sum(len(r.verified_hits) for r in outcome.reports),
        "engine_sun": sum(r.sun.sun for r in outcome.reports if r.sun is not None),
        "not_novel": outcome.not_novel,
        "repeat_evals": outcome.repeats,
        "hits": len(outcome.hits),
        "best_B_GPa": max(moduli) if moduli else float("nan"),
    }


def _row(part: str, strategy: str, off: str, seeds: list[int], outcomes: list[Outcome], sizes: Sizes) -> dict:
    per_seed = [_counts(o) for o in outcomes]
    total = {k: sum((c[k] for c in per_seed), Counter() if isinstance(per_seed[0][k], Counter) else 0) for k in per_seed[0] if k != "best_B_GPa"}
    rates = [100.0 * c["hits"] / c["oracle_calls"] if c["oracle_calls"] else 0.0 for c in per_seed]
    return {
        "part": part,
        "strategy": strategy,
        "guards_off": off,
        "seeds": ",".join(str(s) for s in seeds),
        "budget": sizes.label,
        **total,
        "rejected_by": _summary(total["rejected_by"]),
        "failed_by": _summary(total["failed_by"]),
        "hits_per_100": 100.0 * total["hits"] / total["oracle_calls"] if total["oracle_calls"] else 0.0,
        "per_seed_hits_per_100": " / ".join(f"{r:.0f}" for r in rates),
        "best_B_GPa": max(c["best_B_GPa"] for c in per_seed),
        "wall_s": sum(o.seconds for o in outcomes) / len(outcomes),
    }


def _strategy_row(strategy: str, outcomes: list[Outcome], sizes: Sizes) -> dict:
    return _row("strategy", strategy, "-", list(sizes.seeds), outcomes, sizes)


def _ablation_row(off: str | None, outcome: Outcome, reference: Outcome, sizes: Sizes) -> dict:
    row = _row("ablation", "random", off or "none", [sizes.seeds[0]], [outcome], sizes)
    if off is None:
        return row | {"stopped_in_all_on": "-", "into_pool_without": "-", "to_oracle_without": "-", "their_outcome": "-"}
    stopped = [cid for cid, c in reference.candidates.items() if c.status == CandidateStatus.REJECTED and off in _failing(c)]
    through = [outcome.candidates[cid] for cid in stopped if cid in outcome.candidates and outcome.candidates[cid].status in _KEPT]
    measured = [c for c in through if c.status in _PICKS]
    failed = sum(any(m.status != "ok" for m in c.measurements) for c in measured)
    unstable = sum(outcome.measured(c).get("e_above_hull", -1.0) > MAX_E_ABOVE_HULL for c in measured)
    hits = sum(c.id in outcome.hits for c in measured)
    row |= {
        "stopped_in_all_on": len(stopped),
        "into_pool_without": len(through),
        "to_oracle_without": len(measured),
        "their_outcome": f"{failed} failed, {unstable} above hull, {hits} hits" if measured else "-",
    }
    return row


# ---------------------------------------------------------------------------- entry point
def run(quick: bool = False) -> list[dict]:
    """Part 1 (strategies) and part 2 (guard ablation) rows; see the module docstring."""
    torch.set_num_threads(1)
    sizes = QUICK if quick else FULL
    base = load_campaign_config(CONFIG)
    training = TrainingSet.load()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-loop-generative-") as tmp:
        root = Path(tmp)
        base = _pin_generator(base, root)
        started = time.perf_counter()
        references = _reference_cache(base, root)
        logger.info("elemental references relaxed in %.0f s", time.perf_counter() - started)
        strategies, guards = (QUICK_STRATEGIES, QUICK_GUARDS) if quick else (STRATEGIES, GUARDS)
        outcomes: dict[str, list[Outcome]] = {s: [] for s in strategies}
        for seed in sizes.seeds:
            for strategy in strategies:
                outcomes[strategy].append(_run(base, f"stiff-{strategy}-s{seed}", strategy, seed, None, sizes, root, references, training))
        rows += [_strategy_row(s, outcomes[s], sizes) for s in strategies]
        reference = outcomes["random"][0]
        rows.append(_ablation_row(None, reference, reference, sizes))
        for guard in guards:
            outcome = _run(base, f"stiff-random-s{sizes.seeds[0]}-no-{guard}", "random", sizes.seeds[0], guard, sizes, root, reference.folder / "oracle.db", training)
            rows.append(_ablation_row(guard, outcome, reference, sizes))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logger.setLevel(logging.INFO)
    from benchmarks.run_all import machine_description, to_markdown

    started = time.perf_counter()
    rows = run(quick=args.quick)
    logger.info("Machine: %s; total %.0f s\n\n%s", machine_description(), time.perf_counter() - started, to_markdown(rows))


if __name__ == "__main__":
    main()
