"""CSP per generator on the held-out perov_5/val and carbon_24/val splits, k=1 and k=20, in one run: substitution (train split only), random search, template, the shipped diffusion models, a composite of substitution and random search, against a random same-size training structure.

Per dataset (fitted on ``<name>/train``, measured on ``<name>/val``; the same val rows for every arm):

* ``substitution train``: :class:`~crystaloop.generator.substitution.SubstitutionGenerator` over
  the train split only (no prototypes, so no val row can be in its library), most probable
  substitutions first; charge balance required on perov_5, not on carbon_24 (pure carbon);
* ``random_search``: :class:`~crystaloop.generator.random_search.RandomSearchGenerator` (pyxtal,
  random compatible space group, no training);
* ``template``: :class:`~crystaloop.generator.symmetry.generator.TemplateGenerator` fitted on the
  train split (most probable templates first);
* ``consistency 2 steps (shipped)``: the shipped distilled diffusion model, k independent samples
  (the cheap diffusion arm); ``diffusion pc 1000 steps (shipped)``: the shipped full-step model,
  on the first ``DIFFUSION_ROWS`` / ``DIFFUSION_K_ROWS`` rows only (its cost: the ``seconds``
  columns);
* ``composite sub 0.5 + rss 0.5``: :class:`~crystaloop.generator.composite.CompositeGenerator`
  with those two arms at fixed shares. At k=1 the one structure goes to the first arm
  (``apportion`` gives ties to the earlier arm), so k=1 is substitution's; at k=20 each arm makes 10;
* ``random same-size train structure`` (no-learning baseline): k train structures drawn at random
  among those with the composition's per-element counts, elements swapped count for count.

A composition an arm cannot serve (no library structure hosts it, pyxtal finds no placement) is a
miss and counted in ``no_output_k1`` / ``no_output_k20``. Match: the project's CSP matcher through
:func:`benchmarks.csp_arms.csp_row` (``get_rms_dist`` returns a value; strict ``StructureMatcher.fit``
beside it; RMSE normalised by (V/N)^(1/3), k=1 matches only). ``seconds_*`` is sampling time alone,
one torch thread. Sizes: k=1 on the first ``CSP_ROWS`` val rows, k=20 on the first ``CSP_K_ROWS``;
``quick=True``: 150 train rows, 4 val rows at k=1 and 2 at k=5, no full-step diffusion arm.
"""

from __future__ import annotations

import logging

import numpy as np

from benchmarks.csp_arms import Sampler, csp_row, diffusion_sampler, from_generator, same_size_sampler
from crystaloop.data.datasets import load_dataset

logger = logging.getLogger(__name__)

DATASETS = ("perov_5", "carbon_24")
K = 20
CSP_ROWS, CSP_K_ROWS = 60, 10
DIFFUSION_ROWS, DIFFUSION_K_ROWS = 8, 1
QUICK = {"train": 150, "csp": 4, "csp_k": 2, "k": 5, "loo": 10}


def run(quick: bool = False) -> list[dict]:
    import torch

    from crystaloop.generator.composite import CompositeGenerator
    from crystaloop.generator.random_search import RandomSearchGenerator
    from crystaloop.generator.substitution import SubstitutionGenerator
    from crystaloop.generator.symmetry.generator import TemplateGenerator

    torch.set_num_threads(1)
    rows = []
    for name in DATASETS:
        train = list(load_dataset(f"{name}/train", max_rows=QUICK["train"] if quick else None).crystals)
        val = list(load_dataset(f"{name}/val", max_rows=QUICK["csp"] if quick else CSP_ROWS).crystals)
        k_rows = QUICK["csp_k"] if quick else CSP_K_ROWS
        substitution = SubstitutionGenerator(train, prototypes=False, charge_balance=name != "carbon_24",
                                             training_dataset=f"{name}/train")
        random_search = RandomSearchGenerator(max_atoms=max(c.n_sites for c in val))
        arms: dict[str, Sampler] = {
            "substitution train": from_generator(substitution),
            "random_search": from_generator(random_search),
            "template": from_generator(TemplateGenerator.from_crystals(train, loo_rows=QUICK["loo"] if quick else 100,
                                                                       training_dataset=f"{name}/train")),
            "composite sub 0.5 + rss 0.5": from_generator(CompositeGenerator(
                [("substitution", substitution), ("random_search", random_search)], {"substitution": 0.5, "random_search": 0.5})),
            "random same-size train structure (baseline)": same_size_sampler(train, np.random.default_rng(0)),
        }
        consistency = diffusion_sampler(f"{name}_consistency", "consistency", 2)
        if consistency is not None:
            arms["consistency 2 steps (shipped)"] = consistency
        for arm, sampler in arms.items():
            rows.append(csp_row(f"{name}/val", arm, sampler, val, k_rows, QUICK["k"] if quick else K))
        if not quick:
            full = diffusion_sampler(name, "pc", 1000)
            if full is not None:
                rows.append(csp_row(f"{name}/val", "diffusion pc 1000 steps (shipped)", full, val[:DIFFUSION_ROWS], DIFFUSION_K_ROWS, K))
    return rows


if __name__ == "__main__":
    from benchmarks.run_all import run_standalone

    run_standalone(run, __doc__)
