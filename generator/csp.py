"""CSP evaluation runs: k structures per reference composition from each arm, scored at k=1 and k,
beside the two no-learning baselines on the same rows (DESIGN.md, Reference protocols).

A :data:`Sampler` maps ``(references, k)`` to one list of up to ``k`` structures per reference;
``[None]`` is an arm that could not serve that composition (a miss, counted as ``no_output``).
Samplers come from any :class:`~crystaloop.generator.base.Generator` (:func:`from_generator`, one
``sample(k, Condition(composition=...), seed=seed + row)`` per row) or from a diffusion model
batched over all rows (:func:`diffusion_sampler`).

The baselines, both Generator-port implementations that learn nothing:

* :func:`template_rule`: the composition-to-template rule, substitution of the composition into
  the most similar training structure (:class:`~crystaloop.generator.substitution.SubstitutionGenerator`
  over the training split alone: no prototypes, no partial substitutions; its most probable
  substitutions first);
* :class:`SameSizeGenerator`: a random training structure with the composition's per-element
  counts, elements swapped count for count (:func:`same_size`).

Metrics (:func:`csp_row`): :func:`crystaloop.generator.evaluation.csp_metrics` on the first
structure (k=1; match = ``get_rms_dist`` returns a value, strict ``fit``, RMSE normalised by
(V/N)^(1/3)) and :func:`~crystaloop.generator.evaluation.csp_metrics_at_k` on ``k`` (any of them),
with the project's one CSP matcher (:func:`crystaloop.data.matching.structure_matcher`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crystaloop import __version__
from crystaloop.data.crystal import Crystal
from crystaloop.data.errors import CrystaloopError
from crystaloop.data.records import Candidate, Condition, Provenance
from crystaloop.generator.evaluation import csp_metrics, csp_metrics_at_k

__all__ = ["Sampler", "ArmResult", "SameSizeGenerator", "same_size", "same_size_sampler", "template_rule",
           "from_generator", "diffusion_sampler", "evaluate_arm", "csp_row", "refined", "BASELINE_RULE", "BASELINE_RANDOM"]

logger = logging.getLogger(__name__)

Sampler = Callable[[Sequence[Crystal], int], list[list[Crystal | None]]]
"""``(references, k)`` → per reference up to ``k`` structures (``[None]``: the arm cannot serve it)."""

Progress = Callable[[int, int], None]
"""``progress(done, total)``."""

BASELINE_RULE = "template rule (baseline)"
"""Arm name of the composition-to-template baseline (:func:`template_rule`)."""
BASELINE_RANDOM = "random same-size (baseline)"
"""Arm name of the random same-size training structure baseline (:class:`SameSizeGenerator`)."""


def same_size(train: Sequence[Crystal], composition: dict[str, int], k: int, rng: np.random.Generator) -> list[Crystal | None]:
    """k distinct random train structures with the composition's per-element counts, elements swapped
    count for count (random among equal counts); ``[None]`` when no train structure has those counts."""
    wanted = sorted(composition.values())
    pool = [c for c in train if sorted(c.composition.values()) == wanted]
    if not pool:
        return [None]
    out: list[Crystal | None] = []
    for index in rng.permutation(len(pool))[:k]:
        parent = pool[int(index)]
        mapping: dict[str, str] = {}
        for count in set(wanted):
            sources = [el for el, n in parent.composition.items() if n == count]
            targets = [el for el, n in composition.items() if n == count]
            mapping.update(zip(sources, rng.permutation(targets).tolist(), strict=True))
        out.append(Crystal.from_symbols(parent.lattice, parent.frac_coords, [mapping[s] for s in parent.symbols]))
    return out


def same_size_sampler(train: Sequence[Crystal], rng: np.random.Generator) -> Sampler:
    """The random same-size baseline as one sampler drawing every row from one shared ``rng``."""
    return lambda references, k: [same_size(train, c.composition, k, rng) for c in references]


class SameSizeGenerator:
    """No-learning baseline: up to ``n`` distinct training structures with the asked composition's
    per-element counts (:func:`same_size`), deterministic per seed.

    Args:
        train: the training structures drawn from.
        training_dataset: their dataset spec (provenance and novelty reference).
    """

    def __init__(self, train: Sequence[Crystal], *, training_dataset: str | None = None,
                 name: str = "baseline.same-size") -> None:
        if not train:
            raise CrystaloopError("the random same-size baseline needs at least one training structure")
        self.train, self.training_dataset, self.name = list(train), training_dataset, name

    def sample(self, n: int, condition: Condition | None = None, *, seed: int) -> list[Candidate]:
        """Up to ``n`` candidates (fewer when fewer training structures have those counts).

        Raises:
            CrystaloopError: no composition asked for, or no training structure with its counts.
        """
        if condition is None or condition.composition is None:
            raise CrystaloopError("the random same-size baseline predicts a structure for a composition; give one")
        drawn = same_size(self.train, dict(condition.composition), n, np.random.default_rng(seed))
        if drawn == [None]:
            counts = sorted(condition.composition.values())
            raise CrystaloopError(f"no training structure has the per-element counts {counts} of {condition.composition}")
        provenance = Provenance(component=self.name, version=__version__, seed=seed, source=self.training_dataset)
        return Candidate.from_crystals([c for c in drawn if c is not None], provenance, condition)


def template_rule(train: Sequence[Crystal], *, training_dataset: str | None = None):  # noqa: ANN201 - SubstitutionGenerator
    """The composition-to-template baseline: substitution into the training structures alone (no
    prototypes, no partial substitutions), most probable first; charge balance required unless every
    training structure is a single element (pure carbon has no oxidation states to balance)."""
    from crystaloop.generator.substitution import SubstitutionGenerator

    single = all(len(c.composition) == 1 for c in train)
    return SubstitutionGenerator(train, prototypes=False, partial=False, charge_balance=not single,
                                 training_dataset=training_dataset, name="baseline.template-rule")


def from_generator(generator, *, seed: int = 0, on_row: Progress | None = None) -> Sampler:  # noqa: ANN001 - any Generator
    """``generator.sample(k, Condition(composition=...), seed=seed + row)`` per reference; a
    CrystaloopError is a miss. ``on_row(done, total)`` after each row."""
    def sample(references: Sequence[Crystal], k: int) -> list[list[Crystal | None]]:
        out: list[list[Crystal | None]] = []
        for row, reference in enumerate(references):
            try:
                drawn = generator.sample(k, Condition(composition=reference.composition), seed=seed + row)
                out.append([c.crystal for c in drawn] or [None])
            except CrystaloopError as exc:
                logger.debug("%s: %s", reference.composition, exc)
                out.append([None])
            if on_row is not None:
                on_row(row + 1, len(references))
        return out
    return sample


def diffusion_sampler(generator, *, seed: int = 0, on_step: Progress | None = None) -> Sampler:  # noqa: ANN001 - DiffusionGenerator
    """A diffusion generator sampling ``k`` independent structures per reference with its atoms fixed
    (CSP), all rows in the generator's batches; ``on_step(step, total)`` once per reverse step.

    Raises (when called):
        CrystaloopError: an element outside the model's vocabulary (naming the row).
    """
    def sample(references: Sequence[Crystal], k: int) -> list[list[Crystal | None]]:
        import torch

        from crystaloop.generator.diffusion.generator import crystal_from_sample
        from crystaloop.generator.diffusion.sampling import SampleRequest

        repeated = [c for c in references for _ in range(k)]
        tokens = torch.cat([generator.model.normalisation.tokens(c.numbers, where=f"row {i // k}") for i, c in enumerate(repeated)])
        request = SampleRequest(num_atoms=torch.tensor([c.n_sites for c in repeated]), tokens=tokens)
        raw = generator.sample_raw(request, seed=seed, on_step=on_step)
        flat = [crystal_from_sample(*parts) for parts in raw.split()]
        return [flat[i * k:(i + 1) * k] for i in range(len(references))]
    return sample


@dataclass
class ArmResult:
    """One arm's CSP row (:func:`csp_row`'s columns) and its k=1 structures, one per reference (``None``: a miss)."""

    row: dict[str, Any]
    k1: list[Crystal | None] = field(default_factory=list)


def evaluate_arm(data: str, arm: str, sampler: Sampler, val: Sequence[Crystal], k_rows: int, k: int = 20,
                 progress: Progress | None = None) -> ArmResult:
    """One arm's CSP row on ``val``: k=1 on every row, k=``k`` on the first ``k_rows`` (0: skipped).

    Columns: ``match_k1_%``, ``fit_k1_%``, ``rmse_k1`` (normalised by (V/N)^(1/3), matches only),
    ``no_output_k1`` (rows with no structure), ``seconds_k1`` (sampling alone), then the same at k
    (no RMSE; ``no_output_k{k}`` counts rows with no structure at all, ``mean_outputs_k{k}`` the
    structures per row), ``match_k2_%`` / ``fit_k2_%`` from the first two of those k (a generator's
    two most probable answers, or any two independent samples), and ``structures_per_s`` (sampling
    alone, over both). ``progress(done, total)`` counts scored rows (``len(val) + k_rows``).
    """
    total = len(val) + k_rows
    start = time.perf_counter()
    single = [options[0] if options else None for options in sampler(val, 1)]
    seconds = time.perf_counter() - start
    one = csp_metrics(val, single, progress=(lambda d, _: progress(d, total)) if progress else None)
    row = {"data": data, "arm": arm, "n": one["n"], "match_k1_%": one["match_rate"], "fit_k1_%": one["fit_rate"],
           "rmse_k1": one["rmse"], "no_output_k1": one["invalid_samples"], "seconds_k1": round(seconds, 1)}
    many: list[list[Crystal | None]] = []
    seconds_k = 0.0
    if k_rows:
        start = time.perf_counter()
        many = sampler(val[:k_rows], k)
        seconds_k = time.perf_counter() - start
        at_k = csp_metrics_at_k(val[:k_rows], many, progress=(lambda d, _: progress(len(val) + d, total)) if progress else None)
        outputs = [sum(c is not None for c in o) for o in many]
        at_two = csp_metrics_at_k(val[:k_rows], [options[:2] for options in many])
        row.update({"match_k2_%": at_two["match_rate"], "fit_k2_%": at_two["fit_rate"],
                    f"n_k{k}": at_k["n"], f"match_k{k}_%": at_k["match_rate"], f"fit_k{k}_%": at_k["fit_rate"],
                    f"no_output_k{k}": sum(o == 0 for o in outputs), f"mean_outputs_k{k}": float(np.mean(outputs)),
                    f"seconds_k{k}": round(seconds_k, 1)})
    row["structures_per_s"] = (len(val) + sum(len(o) for o in many)) / max(seconds + seconds_k, 1e-9)
    logger.info("%s", row)
    return ArmResult(row, single)


def refined(crystal: Crystal, symprec: float = 0.1) -> Crystal:
    """``crystal`` made exactly symmetric: spglib's refined (standard conventional) cell at ``symprec``
    Å (angle tolerance 5°), so a CIF written with that space group's operations parses back with the
    same sites; the crystal itself when spglib finds no symmetry dataset."""
    import warnings

    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Crystal.from_pymatgen(SpacegroupAnalyzer(crystal.to_pymatgen(), symprec=symprec).get_refined_structure())
    except Exception as exc:  # spglib fails on degenerate cells; the cell as given (P1) is still a valid answer
        logger.debug("no refined cell for %s: %s", crystal.reduced_formula, exc)
        return crystal


def csp_row(data: str, arm: str, sampler: Sampler, val: Sequence[Crystal], k_rows: int, k: int = 20) -> dict:
    """:func:`evaluate_arm`'s row alone."""
    return evaluate_arm(data, arm, sampler, val, k_rows, k).row
