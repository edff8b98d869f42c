"""Words that constrain: how often text-conditioned samples satisfy what the prompt names, raw vs enforced, vs no text.

Prompts are written from held-out perov_5/val structures (never seen in training), in two
families, each sampled with the shipped ``perov_5_multimodal`` generator (the direct route: the
fusion model's text latent conditions the sampler; no prior) at ``STEPS`` DDIM steps:

* ``csp``: ``"<crystal system> <formula> perovskite"`` with the formula as the composition; the
  prompt's constraints are the formula and the crystal system of the true structure (spglib,
  0.1 Å);
* ``de novo``: ``"an oxide of <B-site element>"`` within the true structure's elements; the
  constraint is that element (and O).

Per family and route: the rate at which the *raw* samples (before enforcement) satisfy the
prompt's explicit constraints, the rate after :func:`crystaloop.multimodal.prompt.sample_satisfying`
(every kept sample re-checked; the goal is 100 %), samples drawn per kept sample, the share that
needed symmetrising, the CSP match rate of the kept samples against the true structure, unique
structures among the kept (of ``SAMPLES``), and seconds. Baseline, same seeds and conditions: the
same generator without the text latent (``no text``), so the table shows what the words add beyond
the composition or chemical system.

Run ``python -m benchmarks.bench_prompt_constraints`` (``--quick``: 2 prompts per family, 20 steps).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets import load_dataset
from crystaloop.data.matching import structure_matcher
from crystaloop.data.records import Condition
from crystaloop.generator.config import SamplerConfig
from crystaloop.generator.diffusion.generator import DiffusionGenerator
from crystaloop.generator.shipped import resolve_generator_checkpoint
from crystaloop.multimodal.conditioning import embedding_condition
from crystaloop.multimodal.fusion import load_checkpoint
from crystaloop.multimodal.pretrained import shipped_checkpoint
from crystaloop.multimodal.prompt import crystal_system_of, parse_prompt, sample_satisfying

logger = logging.getLogger("crystaloop.benchmarks.prompt_constraints")

PROMPTS = 12  # per family
SAMPLES = 8
STEPS = 50
ROUNDS = 4


@dataclass(frozen=True)
class Prompt:
    family: str
    text: str
    condition: Condition
    truth: Crystal


def _prompts(count: int) -> list[Prompt]:
    """``count`` prompts per family from the first perov_5/val structures (fixed order, no tuning)."""
    val = load_dataset("perov_5/val").crystals
    prompts: list[Prompt] = []
    for crystal in val[:count]:
        system = crystal_system_of(crystal.spacegroup_number(0.1) or 1)
        prompts.append(Prompt("csp", f"{system} {crystal.reduced_formula} perovskite",
                              Condition(composition=crystal.composition), crystal))
    for crystal in val[count:]:
        if len(prompts) == 2 * count:
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

    def __init__(self, generator: DiffusionGenerator, condition: Condition) -> None:
        self.generator, self.condition, self.drawn, self.first = generator, condition, 0, []

    def __call__(self, count: int, seed: int) -> list:
        batch = self.generator.sample(count, self.condition, seed=seed)
        self.drawn += len(batch)
        if not self.first:
            self.first = list(batch)
        return batch


def _route_row(generator: DiffusionGenerator, encoder, prompts: list[Prompt], family: str, with_text: bool,
               samples: int, rounds: int) -> dict:
    """One (family, route) row over its prompts."""
    matcher = structure_matcher("csp")
    raw_ok = raw_total = kept_total = drawn_total = symmetrised = matched = unique = checked_ok = 0
    started = time.perf_counter()
    for index, prompt in enumerate(p for p in prompts if p.family == family):
        constraints = parse_prompt(prompt.text)
        condition = prompt.condition
        if with_text:
            embedding = embedding_condition(encoder, text=prompt.text).embedding
            condition = condition.model_copy(update={"embedding": embedding})
        draw = _Draws(generator, condition)
        kept, reasons = sample_satisfying(draw, samples, constraints, seed=100 * index, max_rounds=rounds)
        drawn_total += draw.drawn
        raw_total += len(draw.first)
        raw_ok += sum(not constraints.violations(c.crystal) for c in draw.first)
        symmetrised += reasons.get("symmetrised", 0)
        kept_total += len(kept)
        checked_ok += sum(not constraints.violations(c.crystal) for c in kept)
        unique += len({c.id for c in kept})
        if family == "csp":
            matched += sum(bool(matcher.fit(c.crystal.to_pymatgen(), prompt.truth.to_pymatgen())) for c in kept)
        logger.info("%s / %s / %r: %d kept of %d drawn", family, "text" if with_text else "no text", prompt.text, len(kept), draw.drawn)
    n_prompts = sum(p.family == family for p in prompts)
    return {
        "family": family,
        "route": "text (direct)" if with_text else "no text",
        "prompts": n_prompts,
        "raw_satisfied_%": 100.0 * raw_ok / max(raw_total, 1),
        "kept_satisfied_%": 100.0 * checked_ok / max(kept_total, 1),
        "kept_of_wanted_%": 100.0 * kept_total / max(n_prompts * samples, 1),
        "drawn_per_kept": drawn_total / max(kept_total, 1),
        "symmetrised_%": 100.0 * symmetrised / max(kept_total, 1),
        "csp_match_%": 100.0 * matched / max(kept_total, 1) if family == "csp" else "-",
        "unique_of_8": unique / max(n_prompts, 1) * 8 / samples,
        "seconds": time.perf_counter() - started,
    }


def run(quick: bool = False) -> list[dict]:
    """Rows per (family, route); see the module docstring."""
    torch.set_num_threads(1)
    prompts = _prompts(2 if quick else PROMPTS)
    generator = DiffusionGenerator.from_checkpoint(resolve_generator_checkpoint("perov_5_multimodal"),
                                                   SamplerConfig(steps=20 if quick else STEPS, method="ddim"))
    encoder, _ = load_checkpoint(shipped_checkpoint())
    rows = []
    for family in ("csp", "de novo"):
        for with_text in (True, False):
            rows.append(_route_row(generator, encoder, prompts, family, with_text, SAMPLES, 2 if quick else ROUNDS))
            logger.info("%s", rows[-1])
    return rows


if __name__ == "__main__":
    from benchmarks.run_all import run_standalone

    run_standalone(run, __doc__)
