"""CSP arms shared by the generator benchmarks (bench_generators_cheap, bench_template): the package's
CSP evaluation (:mod:`crystaloop.generator.csp`: samplers, the no-learning same-size baseline and the
one CSP row) plus the shipped diffusion checkpoints by name.

A :data:`Sampler` maps ``(references, k)`` to one list of up to ``k`` structures per reference;
``[None]`` is an arm that could not serve that composition (a miss, counted as ``no_output``).
Metrics: :func:`crystaloop.generator.evaluation.csp_metrics` on the first structure (k=1) and
:func:`~crystaloop.generator.evaluation.csp_metrics_at_k` on ``k`` (any of them).
"""

from __future__ import annotations

import logging

from crystaloop.data.errors import CrystaloopError
from crystaloop.generator.csp import Sampler, csp_row, from_generator, same_size, same_size_sampler

__all__ = ["Sampler", "csp_row", "diffusion_sampler", "from_generator", "same_size", "same_size_sampler"]

logger = logging.getLogger(__name__)


def diffusion_sampler(checkpoint: str, method: str, steps: int) -> Sampler | None:
    """The shipped diffusion checkpoint ``checkpoint`` (``perov_5``, ``carbon_24_consistency``) sampling
    ``k`` independent structures per reference with its atoms fixed (CSP), by ``method`` in ``steps``
    (seed 0); ``None`` when no such checkpoint ships."""
    from crystaloop.generator import csp
    from crystaloop.generator.config import SamplerConfig
    from crystaloop.generator.diffusion.generator import DiffusionGenerator
    from crystaloop.generator.shipped import shipped_generator_path

    try:
        path = shipped_generator_path(checkpoint)
    except CrystaloopError as exc:
        logger.info("no diffusion arm %s: %s", checkpoint, exc)
        return None
    return csp.diffusion_sampler(DiffusionGenerator.from_checkpoint(path, SamplerConfig(method=method, steps=steps)), seed=0)
