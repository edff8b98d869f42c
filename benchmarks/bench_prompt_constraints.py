"""Words that constrain, and the latent prior: text- and XRD-conditioned samples by the direct and the prior route, vs no query.

Queries are written from held-out perov_5/val structures (never seen in training), in three
families, each sampled with the shipped ``perov_5_multimodal`` generator at ``STEPS`` DDIM steps:

* ``csp``: ``"<crystal system> <formula> perovskite"`` with the formula as the composition; the
  prompt's constraints are the formula and the crystal system of the true structure (spglib,
  0.1 Å);
* ``de novo``: ``"an oxide of <B-site element>"`` within the true structure's elements; the
  constraint is that element (and O);
* ``csp xrd``: the simulated powder pattern of the same structures as ``csp``, made
  measurement-like (:func:`crystaloop.multimodal.xrd.augment_patterns`, seeded), with the
  composition; no prompt constraints (the composition is fixed), so no enforcement.

Routes (:mod:`crystaloop.loop.query`, the code behind ``generate --route``): ``direct`` (the
fusion model's latent of the query conditions every sample), ``prior`` (the shipped latent prior,
``multimodal/shipped/prior.pt``, draws one structure latent per sample given the query latent,
32 Heun steps, guidance 1), and the baseline ``none`` (same generator, same seeds and
composition / chemical system, no latent; the ``csp`` family's ``none`` row is the ``csp xrd``
family's baseline too, the same compositions and seeds).

Per family and route: the rate at which the *raw* samples (before enforcement) satisfy the
prompt's explicit constraints, the rate after :func:`crystaloop.multimodal.prompt.sample_satisfying`
(every kept sample re-checked; the goal is 100 %), samples drawn per kept sample, the share that
needed symmetrising, the CSP match and strict-fit rates of the kept samples against the true
structure (:func:`crystaloop.generator.evaluation.csp_metrics`: match = ``get_rms_dist`` returns a
value at stol 0.5, ltol 0.3, angle_tol 10; fit = ``fit``), and diversity: distinct structures
among the kept samples of one query (of ``SAMPLES``; two samples are one structure when the same
matcher fits them), and seconds.

Run ``python -m benchmarks.bench_prompt_constraints`` (``--quick``: 2 queries per family, 20 steps).
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets import load_dataset
from crystaloop.data.matching import structure_matcher
from crystaloop.data.records import Condition
from crystaloop.generator.config import SamplerConfig
from crystaloop.generator.diffusion.generator import DiffusionGenerator
from crystaloop.generator.evaluation import csp_metrics
from crystaloop.generator.shipped import resolve_generator_checkpoint
from crystaloop.loop.query import QueryGenerator, QueryRoute
from crystaloop.multimodal.fusion import FusionModel, load_checkpoint
from crystaloop.multimodal.pretrained import shipped_checkpoint
from crystaloop.multimodal.prior import LatentPrior, load_prior
from crystaloop.multimodal.prompt import PromptConstraints, crystal_system_of, parse_prompt, sample_satisfying
from crystaloop.multimodal.xrd import augment_patterns, simulate_patterns

logger = logging.getLogger("crystaloop.benchmarks.prompt_constraints")

PROMPTS = 12  # per family
SAMPLES = 8
STEPS = 50
ROUNDS = 4
PATTERN_SEED = 7
ROUTES = ("direct", "prior", "none")


@dataclass(frozen=True)
class Prompt:
    family: str
    text: str  # the prompt, or a name of the pattern for the xrd family
    condition: Condition
    truth: Crystal
    pattern: np.ndarray | None = None  # (P,) augmented pattern of the xrd family


def _prompts(count: int) -> list[Prompt]:
    """``count`` queries per family from the first perov_5/val structures (fixed order, no tuning)."""
    val = load_dataset("perov_5/val").crystals
    prompts: list[Prompt] = []
    for crystal in val[:count]:
        system = crystal_system_of(crystal.spacegroup_number(0.1) or 1)
        prompts.append(Prompt("csp", f"{system} {crystal.reduced_formula} perovskite",
                              Condition(composition=crystal.composition), crystal))
    patterns = augment_patterns(simulate_patterns(val[:count]), np.random.default_rng(PATTERN_SEED))
    for crystal, pattern in zip(val[:count], patterns, strict=True):
        prompts.append(Prompt("csp xrd", f"pattern of {crystal.reduced_formula}", Condition(composition=crystal.composition),
                              crystal, pattern))
    start = len(prompts)
    for crystal in val[count:]:
        if len(prompts) == start + count:
            break
        cations = [s for s in crystal.composition if s != "O"]
        if "O" not in crystal.composition or len(cations) < 2:
            continue  # de novo prompts name an oxide's second cation
        b_site = cations[-1]
        prompts.append(Prompt("de novo", f"an oxide of {_element_name(b_site)}",
                              Condition(chemical_system=tuple(crystal.composition)), crystal))
    return prompts


def _element_name(symbol: str) -> str:
    from pymatgen.core.periodic_table import Element

    return Element(symbol).long_name.lower()


class _Draws:
    """``draw(count, seed)`` for :func:`sample_satisfying` that counts what it drew and keeps the first batch (the raw samples)."""

    def __init__(self, generator, condition: Condition) -> None:  # noqa: ANN001 - any Generator
        self.generator, self.condition, self.drawn, self.first = generator, condition, 0, []

    def __call__(self, count: int, seed: int) -> list:
        batch = self.generator.sample(count, self.condition, seed=seed)
        self.drawn += len(batch)
        if not self.first:
            self.first = list(batch)
        return batch


def _distinct(crystals: list[Crystal]) -> int:
    """Structures among ``crystals`` that the CSP matcher tells apart (greedy grouping by ``fit``)."""
    matcher = structure_matcher("csp")
    representatives: list = []
    for crystal in crystals:
        structure = crystal.to_pymatgen()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seen = any(_fits(matcher, structure, other) for other in representatives)
        if not seen:
            representatives.append(structure)
    return len(representatives)


def _fits(matcher, a, b) -> bool:  # noqa: ANN001 - pymatgen objects
    try:
        return bool(matcher.fit(a, b))
    except Exception:  # pymatgen raises on some pathological cells; count as different
        return False


def _generator_for(base: DiffusionGenerator, encoder: FusionModel, prior: LatentPrior, prompt: Prompt, route: str):  # noqa: ANN202
    """The generator of one (query, route): ``base`` itself for ``none``, else the query route around it."""
    if route == "none":
        return base
    if prompt.pattern is not None:
        latent, modality = encoder.embed("xrd", prompt.pattern[None])[0], "xrd"
    else:
        latent, modality = encoder.embed("text", [prompt.text])[0], "text"
    return QueryGenerator(base, QueryRoute(latent, modality, route, prior=prior if route == "prior" else None))


def _route_row(generator: DiffusionGenerator, encoder: FusionModel, prior: LatentPrior, prompts: list[Prompt], family: str,
               route: str, samples: int, rounds: int) -> dict:
    """One (family, route) row over its queries."""
    raw_ok = raw_total = kept_total = drawn_total = symmetrised = checked_ok = distinct = 0
    matched = fitted = 0.0
    started = time.perf_counter()
    chosen = [p for p in prompts if p.family == family]
    for index, prompt in enumerate(chosen):
        constraints = PromptConstraints(text=prompt.text) if prompt.pattern is not None else parse_prompt(prompt.text)
        draw = _Draws(_generator_for(generator, encoder, prior, prompt, route), prompt.condition)
        kept, reasons = sample_satisfying(draw, samples, constraints, seed=100 * index, max_rounds=rounds)
        drawn_total += draw.drawn
        raw_total += len(draw.first)
        raw_ok += sum(not constraints.violations(c.crystal) for c in draw.first)
        symmetrised += reasons.get("symmetrised", 0)
        kept_total += len(kept)
        checked_ok += sum(not constraints.violations(c.crystal) for c in kept)
        distinct += _distinct([c.crystal for c in kept])
        if family != "de novo" and kept:
            scores = csp_metrics([prompt.truth] * len(kept), [c.crystal for c in kept])
            matched += scores["match_rate"] * len(kept) / 100.0
            fitted += scores["fit_rate"] * len(kept) / 100.0
        logger.info("%s / %s / %r: %d kept of %d drawn", family, route, prompt.text, len(kept), draw.drawn)
    constrained = family != "csp xrd"
    csp = family != "de novo"
    return {
        "family": family,
        "route": route,
        "queries": len(chosen),
        "raw_satisfied_%": 100.0 * raw_ok / max(raw_total, 1) if constrained else "-",
        "kept_satisfied_%": 100.0 * checked_ok / max(kept_total, 1) if constrained else "-",
        "kept_of_wanted_%": 100.0 * kept_total / max(len(chosen) * samples, 1),
        "drawn_per_kept": drawn_total / max(kept_total, 1),
        "symmetrised_%": 100.0 * symmetrised / max(kept_total, 1) if constrained else "-",
        "csp_match_%": 100.0 * matched / max(kept_total, 1) if csp else "-",
        "csp_fit_%": 100.0 * fitted / max(kept_total, 1) if csp else "-",
        "distinct_of_8": distinct / max(len(chosen), 1) * 8 / samples,
        "seconds": time.perf_counter() - started,
    }


def run(quick: bool = False) -> list[dict]:
    """Rows per (family, route); see the module docstring."""
    torch.set_num_threads(1)
    prompts = _prompts(2 if quick else PROMPTS)
    generator = DiffusionGenerator.from_checkpoint(resolve_generator_checkpoint("perov_5_multimodal"),
                                                   SamplerConfig(steps=20 if quick else STEPS, method="ddim"))
    encoder, _ = load_checkpoint(shipped_checkpoint())
    prior, _ = load_prior(shipped_checkpoint("prior"))
    rows = []
    for family in ("csp", "csp xrd", "de novo"):
        for route in ROUTES if family != "csp xrd" else ROUTES[:2]:  # its no-query baseline is the csp row's
            rows.append(_route_row(generator, encoder, prior, prompts, family, route, SAMPLES, 2 if quick else ROUNDS))
            logger.info("%s", rows[-1])
    return rows


if __name__ == "__main__":
    from benchmarks.run_all import run_standalone

    run_standalone(run, __doc__)
