"""CSP arms shared by the generator benchmarks (bench_generators_cheap, bench_template): samplers that give
k structures per reference composition, the no-learning same-size baseline, and the one CSP row.

A :data:`Sampler` maps ``(references, k)`` to one list of up to ``k`` structures per reference;
``[None]`` is an arm that could not serve that composition (a miss, counted as ``no_output``).
Metrics: :func:`crystaloop.generator.evaluation.csp_metrics` on the first structure (k=1) and
:func:`~crystaloop.generator.evaluation.csp_metrics_at_k` on ``k`` (any of them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import numpy as np

from crystaloop.data.crystal import Crystal
from crystaloop.data.errors import CrystaloopError
from crystaloop.data.records import Condition
from crystaloop.generator.evaluation import csp_metrics, csp_metrics_at_k

logger = logging.getLogger(__name__)

Sampler = Callable[[Sequence[Crystal], int], list[list[Crystal | None]]]


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
        mapping = {}
        for count in set(wanted):
            sources = [el for el, n in parent.composition.items() if n == count]
            targets = [el for el, n in composition.items() if n == count]
            mapping.update(zip(sources, rng.permutation(targets).tolist(), strict=True))
        out.append(Crystal.from_symbols(parent.lattice, parent.frac_coords, [mapping[s] for s in parent.symbols]))
    return out


def same_size_sampler(train: Sequence[Crystal], rng: np.random.Generator) -> Sampler:
    """The no-learning baseline: :func:`same_size` for every reference."""
    return lambda references, k: [same_size(train, c.composition, k, rng) for c in references]


def from_generator(generator) -> Sampler:  # noqa: ANN001 - any Generator
    """``generator.sample(k, Condition(composition=...), seed=row)`` per reference; an error is a miss."""
    def sample(references: Sequence[Crystal], k: int) -> list[list[Crystal | None]]:
        out: list[list[Crystal | None]] = []
        for seed, reference in enumerate(references):
            try:
                out.append([c.crystal for c in generator.sample(k, Condition(composition=reference.composition), seed=seed)] or [None])
            except CrystaloopError as exc:
                logger.debug("%s: %s", reference.composition, exc)
                out.append([None])
        return out
    return sample


def diffusion_sampler(checkpoint: str, method: str, steps: int) -> Sampler | None:
    """The shipped diffusion checkpoint ``checkpoint`` (``perov_5``, ``carbon_24_consistency``) sampling
    ``k`` independent structures per reference with its atoms fixed (CSP), by ``method`` in ``steps``;
    ``None`` when no such checkpoint ships."""
    from crystaloop.generator.config import SamplerConfig
    from crystaloop.generator.diffusion.generator import DiffusionGenerator, crystal_from_sample
    from crystaloop.generator.shipped import shipped_generator_path

    try:
        path = shipped_generator_path(checkpoint)
    except CrystaloopError as exc:
        logger.info("no diffusion arm %s: %s", checkpoint, exc)
        return None
    generator = DiffusionGenerator.from_checkpoint(path, SamplerConfig(method=method, steps=steps))

    def sample(references: Sequence[Crystal], k: int) -> list[list[Crystal | None]]:
        import torch

        from crystaloop.generator.diffusion.sampling import SampleRequest

        repeated = [c for c in references for _ in range(k)]
        tokens = torch.cat([generator.model.normalisation.tokens(c.numbers) for c in repeated])
        raw = generator.sample_raw(SampleRequest(num_atoms=torch.tensor([c.n_sites for c in repeated]), tokens=tokens), seed=0)
        flat = [crystal_from_sample(*parts) for parts in raw.split()]
        return [flat[i * k:(i + 1) * k] for i in range(len(references))]
    return sample


def csp_row(data: str, arm: str, sampler: Sampler, val: Sequence[Crystal], k_rows: int, k: int = 20) -> dict:
    """One arm's CSP row on ``val``: k=1 on every row, k=``k`` on the first ``k_rows`` (0: skipped).

    Columns: ``match_k1_%``, ``fit_k1_%``, ``rmse_k1``, ``no_output_k1`` (rows with no structure),
    ``seconds_k1`` (sampling alone), then the same at k (no RMSE; ``no_output_k20`` counts rows with no
    structure at all, ``mean_outputs_k20`` the structures per row), ``match_k2_%`` / ``fit_k2_%``
    from the first two of those k (a generator's two most probable answers, or any two independent
    samples), and ``structures_per_s`` over both.
    """
    start = time.perf_counter()
    single = [options[0] if options else None for options in sampler(val, 1)]
    seconds = time.perf_counter() - start
    one = csp_metrics(val, single)
    row = {"data": data, "arm": arm, "n": one["n"], "match_k1_%": one["match_rate"], "fit_k1_%": one["fit_rate"],
           "rmse_k1": one["rmse"], "no_output_k1": one["invalid_samples"], "seconds_k1": round(seconds, 1)}
    many: list[list[Crystal | None]] = []
    seconds_k = 0.0
    if k_rows:
        start = time.perf_counter()
        many = sampler(val[:k_rows], k)
        seconds_k = time.perf_counter() - start
        at_k = csp_metrics_at_k(val[:k_rows], many)
        outputs = [sum(c is not None for c in o) for o in many]
        at_two = csp_metrics_at_k(val[:k_rows], [options[:2] for options in many])
        row.update({"match_k2_%": at_two["match_rate"], "fit_k2_%": at_two["fit_rate"],
                    f"n_k{k}": at_k["n"], f"match_k{k}_%": at_k["match_rate"], f"fit_k{k}_%": at_k["fit_rate"],
                    f"no_output_k{k}": sum(o == 0 for o in outputs), f"mean_outputs_k{k}": float(np.mean(outputs)),
                    f"seconds_k{k}": round(seconds_k, 1)})
    row["structures_per_s"] = (len(val) + sum(len(o) for o in many)) / max(seconds + seconds_k, 1e-9)
    logger.info("%s", row)
    return row
