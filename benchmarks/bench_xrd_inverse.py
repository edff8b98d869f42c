"""Structure from a powder pattern on held-out perov_5: posterior sampling vs prior vs amortised route.

Patterns are simulated from perov_5/val structures (never seen in training) and made
measurement-like (``multimodal.xrd.augment_patterns``: isotropic strain ≤ 1 %, zero shift
≤ 0.1°, intensity jitter, background, counting noise; fixed seed). For each pattern, with its
composition given and the same seeds, ``K`` samples per route, each refined against the pattern
(``data.xrd_refine``) and ranked by Rwp:

* ``prior``: unconditioned structure prediction (the shipped perov_5 teacher, no guidance);
* ``dps``: the same sampler guided by the pattern misfit (``generator.posterior``);
* ``amortised``: the multimodal generator conditioned on the pattern's XRD latent (no guidance);
* ``amortised+dps``: both.

Reported per route: top-1 match (best-Rwp sample matches the true structure, pymatgen
StructureMatcher with the CSP protocol's tolerances), any-of-K match (the true structure among the
K samples: spread calibration), mean best Rwp, Spearman between sample spread (std of volume per
atom over the K samples) and the error of the best sample's volume, mean KL, seconds per pattern.
Then early stopping (dps: the sampler stopped at diffusion time t returns its clean estimate there) and the KL
out-of-distribution score: ROC-AUC separating the in-domain patterns from two-phase mixtures
(equal parts of two different held-out patterns) and from carbon_24 patterns (another dataset),
each with the in-domain composition given, in both directions (see generator.posterior: with the
peak-matching XRD likelihood an unexplained pattern gives the sampler nothing to pull on, so a
*low* KL flags it), and the best refined Rwp as a baseline score.

Run ``python -m benchmarks.bench_xrd_inverse`` (``--quick``: 3 patterns, 20 steps).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets import load_dataset
from crystaloop.data.xrd_forward import powder_pattern_of
from crystaloop.generator.config import SamplerConfig
from crystaloop.generator.diffusion.generator import DiffusionGenerator
from crystaloop.generator.posterior.diagnostics import roc_auc, spread_error_spearman
from crystaloop.generator.posterior.sampler import PosteriorConfig
from crystaloop.generator.posterior.xrd import solve_pattern
from crystaloop.generator.shipped import SHIPPED_GENERATORS, resolve_generator_checkpoint
from crystaloop.multimodal.xrd import augment_patterns

logger = logging.getLogger("crystaloop.benchmarks.xrd_inverse")

PATTERNS = 20
SAMPLES = 4
STEPS = 100
DPS = PosteriorConfig(lattice_step=0.05, frac_step=0.002)
ANNEAL_FWHM = 2.0
STOP_STEPS = (500, 200, 0)  # diffusion time t of the stop (T = 1000); 0 runs to the end
OOD_PATTERNS = 12


def _matcher():  # noqa: ANN202
    from crystaloop.data.matching import structure_matcher

    return structure_matcher("csp")  # the CSP protocol's tolerances


def _latent(patterns: np.ndarray) -> np.ndarray:
    from crystaloop.multimodal.fusion import load_checkpoint
    from crystaloop.multimodal.pretrained import shipped_checkpoint

    model, _ = load_checkpoint(shipped_checkpoint())
    return model.embed("xrd", patterns)


def _route(name: str, teacher: DiffusionGenerator, multimodal: DiffusionGenerator | None, truths: list[Crystal],
           patterns: np.ndarray, latents: np.ndarray | None, guidance: PosteriorConfig) -> dict:
    matcher, rows = _matcher(), []
    started = time.perf_counter()
    for i, (truth, pattern) in enumerate(zip(truths, patterns, strict=True)):
        amortised = name.startswith("amortised")
        generator = multimodal if amortised else teacher
        embedding = tuple(float(v) for v in latents[i]) if amortised else None
        solutions, samples = solve_pattern(generator, pattern, composition=truth.composition, num_samples=SAMPLES,
                                           guidance=guidance, embedding=embedding, anneal_fwhm=ANNEAL_FWHM, seed=i)
        matches = [bool(matcher.fit(s.crystal.to_pymatgen(), truth.to_pymatgen())) for s in solutions]
        volumes = [s.crystal.volume / s.crystal.n_sites for s in solutions]
        truth_volume = truth.volume / truth.n_sites
        rows.append({"top1": bool(matches and matches[0]), "any": any(matches), "rwp": solutions[0].rwp if solutions else 1.0,
                     "spread": float(np.std(volumes)) if volumes else np.nan,
                     "error": abs(volumes[0] - truth_volume) / truth_volume if volumes else np.nan,
                     "kl": float(np.mean(samples.kl))})
        logger.info("%s %d %s: matches %s, best Rwp %.3f, KL %.1f", name, i, truth.reduced_formula, matches, rows[-1]["rwp"], rows[-1]["kl"])
    seconds = (time.perf_counter() - started) / len(truths)
    spread = np.array([r["spread"] for r in rows])
    error = np.array([r["error"] for r in rows])
    ok = np.isfinite(spread) & np.isfinite(error)
    rho = spread_error_spearman(spread[ok], error[ok])
    return {"section": "routes", "route": name, "patterns": len(truths), "samples": SAMPLES, "steps": STEPS,
            "top1_match": float(np.mean([r["top1"] for r in rows])), f"any_of_{SAMPLES}_match": float(np.mean([r["any"] for r in rows])),
            "mean_best_rwp": float(np.mean([r["rwp"] for r in rows])), "spearman_spread_error": rho,
            "mean_kl": float(np.mean([r["kl"] for r in rows])), "s_per_pattern": seconds}


def _early_stopping(teacher: DiffusionGenerator, truths: list[Crystal], patterns: np.ndarray) -> list[dict]:
    matcher, rows = _matcher(), []
    for stop in STOP_STEPS:
        guidance = DPS.model_copy(update={"stop_step": stop})
        top1, best = [], []
        for i, (truth, pattern) in enumerate(zip(truths, patterns, strict=True)):
            solutions, _ = solve_pattern(teacher, pattern, composition=truth.composition, num_samples=SAMPLES,
                                         guidance=guidance, anneal_fwhm=ANNEAL_FWHM, seed=i)
            top1.append(bool(solutions) and bool(matcher.fit(solutions[0].crystal.to_pymatgen(), truth.to_pymatgen())))
            best.append(solutions[0].rwp if solutions else 1.0)
        rows.append({"section": "early stopping (dps)", "stop_at_t": stop, "T": teacher.model.schedule.timesteps, "steps": STEPS, "patterns": len(truths),
                     "top1_match": float(np.mean(top1)), "mean_best_rwp": float(np.mean(best))})
        logger.info("%s", rows[-1])
    return rows


def _ood(teacher: DiffusionGenerator, truths: list[Crystal], patterns: np.ndarray, others: np.ndarray, rng: np.random.Generator) -> list[dict]:
    n = min(OOD_PATTERNS, len(truths))
    shifted = np.roll(patterns[:n], 1, axis=0)
    mixtures = 0.5 * patterns[:n] + 0.5 * shifted
    mixtures /= mixtures.max(axis=1, keepdims=True)
    sets = {"in-domain": patterns[:n], "two-phase mixture": mixtures, "carbon_24 pattern": others[:n]}
    scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for label, group in sets.items():
        kl, misfit = [], []
        for i, pattern in enumerate(group):
            solutions, samples = solve_pattern(teacher, pattern, composition=truths[i].composition, num_samples=SAMPLES,
                                               guidance=DPS, anneal_fwhm=ANNEAL_FWHM, seed=i)
            kl.append(float(np.mean(samples.kl)))
            misfit.append(solutions[0].rwp if solutions else 1.0)
        scores[label] = (np.array(kl), np.array(misfit))
        logger.info("OOD %s: KL %s", label, np.round(scores[label][0], 1))
    rows = []
    inside = scores["in-domain"]
    for label in ("two-phase mixture", "carbon_24 pattern"):
        outside = scores[label]
        rows.append({"section": "OOD", "out-of-domain": label, "patterns": f"{n} + {n}",
                     "mean_kl_in": float(inside[0].mean()), "mean_kl_out": float(outside[0].mean()),
                     "auc_low_kl": roc_auc(-inside[0], -outside[0]), "auc_high_kl": roc_auc(inside[0], outside[0]),
                     "auc_best_rwp": roc_auc(inside[1], outside[1])})
    return rows


def run(quick: bool = False) -> list[dict]:
    global STEPS  # noqa: PLW0603 - the quick run shortens the sampler
    torch.set_num_threads(1)
    STEPS = 20 if quick else STEPS
    count = 3 if quick else PATTERNS
    rng = np.random.default_rng(0)
    truths = load_dataset("perov_5/val", max_rows=400).crystals
    truths = [truths[i] for i in rng.choice(len(truths), size=count, replace=False)]
    patterns = augment_patterns(np.stack([powder_pattern_of(c) for c in truths]), np.random.default_rng(1))
    others = load_dataset("carbon_24/val", max_rows=count).crystals
    other_patterns = augment_patterns(np.stack([powder_pattern_of(c) for c in others]), np.random.default_rng(2))
    sampler = SamplerConfig(method="pc", steps=STEPS)
    teacher = DiffusionGenerator.from_checkpoint(resolve_generator_checkpoint("perov_5"), sampler)
    multimodal = None
    if "perov_5_multimodal" in SHIPPED_GENERATORS:
        multimodal = DiffusionGenerator.from_checkpoint(resolve_generator_checkpoint("perov_5_multimodal"), sampler)
    latents = _latent(patterns) if multimodal is not None else None
    none = PosteriorConfig(lattice_step=0.0, frac_step=0.0)
    routes = {"prior": none, "dps": DPS}
    if multimodal is not None:
        routes |= {"amortised": none, "amortised+dps": DPS}
    rows = [_route(name, teacher, multimodal, truths, patterns, latents, guidance) for name, guidance in routes.items()]
    for row in rows:
        logger.info("%s", row)
    rows += _early_stopping(teacher, truths[: max(3, count // 2)], patterns[: max(3, count // 2)])
    rows += _ood(teacher, truths, patterns, other_patterns, rng)
    return rows


if __name__ == "__main__":
    from benchmarks.run_all import run_standalone

    run_standalone(run, __doc__)
