"""Checks on solve-xrd's answer, on real held-out patterns: how often a flag fires on a wrong best solution, and on a right one.

Patterns are simulated from perov_5/val structures (never seen in training) and made
measurement-like (``multimodal.xrd.augment_patterns``: strain, zero shift, intensity jitter,
background, counting noise; fixed seed). Each is solved as ``crystaloop solve-xrd`` does (the
shipped perov_5 teacher, DPS, composition given, ``SAMPLES`` chains of ``STEPS`` steps, every
sample refined and ranked by Rwp) with a snapshot of every chain at t = ``SNAPSHOT`` (the
early-stopped answers). The best solution is *right* when it matches the true structure (the CSP
protocol's StructureMatcher). The checks of :mod:`crystaloop.generator.posterior.solution_checks`
(modes, support, hallucinated modes, early stopping, KL) are computed for every pattern.

The patterns are split in two halves: each flag's threshold is **calibrated on the first half**
(the threshold that maximises P(flag | wrong) − P(flag | right) with P(flag | right) ≤
``MAX_FALSE_ALARM``) and **measured on the second**. Reported per flag and for "any flag":
P(flag | wrong) (wrong solutions caught), P(flag | right) (right ones doubted), and the top-1
match of the answers left unflagged against all answers (what trusting the checks buys). The
baseline is the no-check answer (every solution trusted) and, implicitly, a flag raised at random,
which has P(flag | wrong) = P(flag | right).

Per-pattern results are cached in ``runs/bench/xrd_checks/<sizes>/pattern-<i>.json`` and read back
when the settings match, so an interrupted run resumes. Run ``python -m benchmarks.bench_xrd_checks``
(``--quick``: 4 patterns, 2 chains, 20 steps).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from crystaloop.data.datasets import load_dataset
from crystaloop.data.matching import structure_matcher
from crystaloop.data.xrd_forward import powder_pattern_of
from crystaloop.generator.config import SamplerConfig
from crystaloop.generator.diffusion.generator import DiffusionGenerator
from crystaloop.generator.posterior.diagnostics import roc_auc
from crystaloop.generator.posterior.sampler import PosteriorConfig
from crystaloop.generator.posterior.solution_checks import SolutionCheckConfig, check_solutions
from crystaloop.generator.posterior.xrd import snapshot_solutions, solve_pattern
from crystaloop.generator.shipped import resolve_generator_checkpoint
from crystaloop.multimodal.xrd import augment_patterns

logger = logging.getLogger("crystaloop.benchmarks.xrd_checks")

MAX_FALSE_ALARM = 0.2
ANNEAL_FWHM = 2.0


@dataclass(frozen=True)
class Sizes:
    """Run sizes (a different size is a different cache directory)."""

    patterns: int = 48
    samples: int = 8
    steps: int = 100
    snapshot: int = 200

    @property
    def tag(self) -> str:
        return f"p{self.patterns}-k{self.samples}-s{self.steps}-t{self.snapshot}"


def _solve_one(index: int, truth, pattern: np.ndarray, teacher: DiffusionGenerator, sizes: Sizes, matcher) -> dict:  # noqa: ANN001
    guidance = PosteriorConfig(lattice_step=0.05, frac_step=0.002, snapshot_step=sizes.snapshot)
    solutions, samples = solve_pattern(teacher, pattern, composition=truth.composition, num_samples=sizes.samples,
                                       guidance=guidance, anneal_fwhm=ANNEAL_FWHM, seed=index)
    if not solutions:
        return {"index": index, "formula": truth.reduced_formula, "collapsed": True}
    early = snapshot_solutions(samples, pattern)
    # every threshold off here: the benchmark reads the raw quantities and thresholds them itself
    checks = check_solutions(solutions, samples.kl, early=early, matcher=matcher,
                             config=SolutionCheckConfig(max_rwp=None, tie_rwp=None, min_support=None, max_hallucination=None))
    truth_structure = truth.to_pymatgen()
    right = bool(matcher.fit(solutions[0].crystal.to_pymatgen(), truth_structure))
    early_right = bool(early) and bool(matcher.fit(early[0].crystal.to_pymatgen(), truth_structure))
    any_right = any(matcher.fit(s.crystal.to_pymatgen(), truth_structure) for s in solutions)
    rwps = [m.rwp for m in checks.modes]
    weights = [m.weight for m in checks.modes]
    return {"index": index, "formula": truth.reduced_formula, "collapsed": False, "right": right, "early_right": early_right,
            "any_right": bool(any_right), "best_rwp": solutions[0].rwp, "gap": checks.runner_up_gap if np.isfinite(checks.runner_up_gap) else 1.0,
            "support": checks.support, "modes": len(checks.modes), "mode_rwp": rwps, "mode_weight": weights,
            "early_agrees": checks.early_agrees, "mean_kl": checks.mean_kl}


def _hallucination(row: dict, ruled_out: float) -> float:
    best = row["mode_rwp"][0]
    return float(sum(w for r, w in zip(row["mode_rwp"], row["mode_weight"], strict=True) if r > best + ruled_out))


# flag name → (score from a row, candidate thresholds, direction: flag when score > threshold (+1) or < (−1))
def _scores(ruled_out: float) -> dict[str, tuple]:
    return {
        "poor_fit": (lambda r: r["best_rwp"], np.round(np.arange(0.10, 0.61, 0.02), 3), +1),
        "ambiguous": (lambda r: r["gap"], np.array([0.0, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.08]), -1),
        "weak_support": (lambda r: r["support"], np.array([1.5, 2.5, 3.5, 4.5]), -1),
        "hallucinated": (lambda r: _hallucination(r, ruled_out), np.round(np.arange(0.1, 0.91, 0.05), 3), +1),
        "early_disagrees": (lambda r: 0.0 if r["early_agrees"] else 1.0, np.array([0.5]), +1),
        "out_of_domain": (lambda r: r["mean_kl"], None, -1),
    }


def _fires(score: float, threshold: float, direction: int) -> bool:
    return score > threshold if direction > 0 else score < threshold


def _rates(rows: list[dict], fired: list[bool]) -> tuple[float, float]:
    wrong = [f for r, f in zip(rows, fired, strict=True) if not r["right"]]
    right = [f for r, f in zip(rows, fired, strict=True) if r["right"]]
    return (float(np.mean(wrong)) if wrong else float("nan"), float(np.mean(right)) if right else float("nan"))


def _calibrate(rows: list[dict], score, candidates: np.ndarray, direction: int) -> float:  # noqa: ANN001
    best, best_value = float(candidates[0]), -np.inf
    for threshold in candidates:
        caught, doubted = _rates(rows, [_fires(score(r), threshold, direction) for r in rows])
        if np.isnan(caught) or np.isnan(doubted) or doubted > MAX_FALSE_ALARM:
            continue
        if caught - doubted > best_value:
            best, best_value = float(threshold), caught - doubted
    return best


def _pattern_rows(sizes: Sizes, quick: bool) -> list[dict]:
    rng = np.random.default_rng(0)
    crystals = load_dataset("perov_5/val").crystals
    picked = rng.choice(len(crystals), size=sizes.patterns, replace=False)
    truths = [crystals[i] for i in picked]
    patterns = augment_patterns(np.stack([powder_pattern_of(c) for c in truths]), np.random.default_rng(1))
    teacher = DiffusionGenerator.from_checkpoint(resolve_generator_checkpoint("perov_5"), SamplerConfig(method="pc", steps=sizes.steps))
    matcher = structure_matcher("csp")
    cache = Path("runs/bench/xrd_checks") / sizes.tag
    cache.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (truth, pattern) in enumerate(zip(truths, patterns, strict=True)):
        path = cache / f"pattern-{i}.json"
        if path.exists():
            saved = json.loads(path.read_text())
            if saved.get("sizes") == asdict(sizes) and saved["row"]["formula"] == truth.reduced_formula:
                rows.append(saved["row"])
                continue
        row = _solve_one(i, truth, pattern, teacher, sizes, matcher)
        path.write_text(json.dumps({"sizes": asdict(sizes), "row": row}))
        logger.info("pattern %d/%d %s: right %s, best Rwp %.3f, support %s, early agrees %s",
                    i + 1, len(truths), row["formula"], row.get("right"), row.get("best_rwp", float("nan")), row.get("support"), row.get("early_agrees"))
        rows.append(row)
    return [r for r in rows if not r["collapsed"]]


def run(quick: bool = False) -> list[dict]:
    torch.set_num_threads(1)
    sizes = Sizes(patterns=4, samples=2, steps=20, snapshot=200) if quick else Sizes()
    rows = _pattern_rows(sizes, quick)
    half = len(rows) // 2
    calibration, evaluation = rows[:half], rows[half:]
    defaults = SolutionCheckConfig()
    out: list[dict] = []
    fired_any = [False] * len(evaluation)
    for name, (score, candidates, direction) in _scores(defaults.ruled_out_rwp).items():
        if candidates is None:  # the KL flag: calibrate over the observed values
            candidates = np.unique(np.round([score(r) for r in calibration], 1)) if calibration else np.array([0.0])
        threshold = _calibrate(calibration, score, candidates, direction) if calibration else float(candidates[0])
        cal_caught, cal_doubted = _rates(calibration, [_fires(score(r), threshold, direction) for r in calibration]) if calibration else (np.nan, np.nan)
        fired = [_fires(score(r), threshold, direction) for r in evaluation]
        fired_any = [a or f for a, f in zip(fired_any, fired, strict=True)]
        caught, doubted = _rates(evaluation, fired)
        out.append(_row(name, threshold, direction, cal_caught, cal_doubted, evaluation, fired, caught, doubted, sizes))
    caught, doubted = _rates(evaluation, fired_any)
    out.append(_row("any flag", None, 0, np.nan, np.nan, evaluation, fired_any, caught, doubted, sizes))
    for name, (score, _, direction) in _scores(defaults.ruled_out_rwp).items():  # threshold-free: how well each score ranks
        out.append({"flag": f"score of {name} (ROC-AUC, wrong = positive)", "auc_evaluation": _auc(evaluation, score, direction),
                    "auc_all_patterns": _auc(rows, score, direction)})
    out.append({"flag": "no checks (every answer trusted)", "evaluation_patterns": len(evaluation),
                "wrong": sum(not r["right"] for r in evaluation), "top1_all_%": 100 * float(np.mean([r["right"] for r in evaluation])) if evaluation else np.nan,
                "top1_early_%": 100 * float(np.mean([r["early_right"] for r in evaluation])) if evaluation else np.nan,
                "truth_among_samples_%": 100 * float(np.mean([r["any_right"] for r in evaluation])) if evaluation else np.nan})
    return out


def _auc(rows: list[dict], score, direction: int) -> float:  # noqa: ANN001
    """ROC-AUC of ``direction * score`` separating wrong best solutions (positive) from right ones; 0.5 = no information."""
    right = np.array([direction * score(r) for r in rows if r["right"]], dtype=float)
    wrong = np.array([direction * score(r) for r in rows if not r["right"]], dtype=float)
    return roc_auc(right, wrong) if right.size and wrong.size else float("nan")


def _row(name: str, threshold: float | None, direction: int, cal_caught: float, cal_doubted: float, evaluation: list[dict],
         fired: list[bool], caught: float, doubted: float, sizes: Sizes) -> dict:
    kept = [r["right"] for r, f in zip(evaluation, fired, strict=True) if not f]
    return {"flag": name, "threshold": "" if threshold is None else f"{'>' if direction > 0 else '<'} {threshold:g}",
            "calibration_caught_%": 100 * cal_caught, "calibration_doubted_%": 100 * cal_doubted,
            "evaluation_patterns": len(evaluation), "wrong": sum(not r["right"] for r in evaluation),
            "caught_wrong_%": 100 * caught, "doubted_right_%": 100 * doubted,
            "top1_unflagged_%": 100 * float(np.mean(kept)) if kept else np.nan, "unflagged": len(kept),
            "top1_all_%": 100 * float(np.mean([r["right"] for r in evaluation])) if evaluation else np.nan,
            "chains": sizes.samples, "steps": sizes.steps, "snapshot_t": sizes.snapshot}


if __name__ == "__main__":
    from benchmarks.run_all import run_standalone

    run_standalone(run, __doc__)
