"""Generators without training on perov_5 CSP: substitution into the train split and the prototype library vs random search vs a random same-size training structure, one sample per held-out val composition, in one run.

Arms (k = 1, one structure per composition; a composition an arm cannot serve counts as a miss):

* ``substitution train``: :class:`~crystaloop.generator.substitution.SubstitutionGenerator`
  over perov_5/train only (the val rows are never in its library), most probable outcome;
  ``no charge filter``: the same with unbalanced compositions allowed (ranked by each
  element's most probable ion);
* ``substitution prototypes``: the prototype library alone (no dataset);
* ``substitution train+prototypes``: both;
* ``random_search``: :class:`~crystaloop.generator.random_search.RandomSearchGenerator` (pyxtal,
  random compatible space group);
* ``random same-size train structure`` (no-learning baseline): a train structure drawn at random
  among those with the composition's per-element counts, its elements replaced count-for-count
  (random among equal counts).

Match: the one matcher of :mod:`crystaloop.data.matching` through
:func:`crystaloop.generator.evaluation.csp_metrics` (``get_rms_dist``; strict ``fit`` beside it).
``charge_balanced_%`` is the share of val compositions with a common-oxidation-state assignment
(the substitution arms refuse the others). ``quick=True`` uses the first 16 val rows.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets import load_dataset
from crystaloop.data.errors import CrystaloopError
from crystaloop.data.records import Condition
from crystaloop.generator.chemistry import is_charge_balanced
from crystaloop.generator.evaluation import csp_metrics
from crystaloop.generator.random_search import RandomSearchGenerator
from crystaloop.generator.substitution import SubstitutionGenerator

logger = logging.getLogger(__name__)


def _one(generator, composition: dict[str, int], seed: int) -> Crystal | None:  # noqa: ANN001
    try:
        return generator.sample(1, Condition(composition=composition), seed=seed)[0].crystal
    except CrystaloopError as exc:
        logger.debug("%s: %s", composition, exc)
        return None


def _same_size(train: list[Crystal], composition: dict[str, int], rng: np.random.Generator) -> Crystal | None:
    """A random train structure with the same per-element counts, elements swapped count-for-count."""
    wanted = sorted(composition.values())
    pool = [c for c in train if sorted(c.composition.values()) == wanted]
    if not pool:
        return None
    parent = pool[int(rng.integers(len(pool)))]
    mapping = {}
    for count in set(wanted):
        sources = [el for el, n in parent.composition.items() if n == count]
        targets = [el for el, n in composition.items() if n == count]
        mapping.update(zip(sources, rng.permutation(targets).tolist(), strict=True))
    return Crystal.from_symbols(parent.lattice, parent.frac_coords, [mapping[s] for s in parent.symbols])


def run(quick: bool = False) -> list[dict]:
    train = list(load_dataset("perov_5/train").crystals)
    val = list(load_dataset("perov_5/val", max_rows=16 if quick else None).crystals)
    compositions = [c.composition for c in val]
    balanced = 100.0 * sum(is_charge_balanced(c) for c in compositions) / len(compositions)
    arms = {
        "substitution train": SubstitutionGenerator(train, prototypes=False, training_dataset="perov_5/train"),
        "substitution train, no charge filter": SubstitutionGenerator(train, prototypes=False, charge_balance=False),
        "substitution prototypes": SubstitutionGenerator(prototypes=True, aflow=False),
        "substitution train+prototypes": SubstitutionGenerator(train, prototypes=True, aflow=False),
        "random_search": RandomSearchGenerator(max_atoms=20),
    }
    rows = []
    for name, generator in arms.items():
        start = time.perf_counter()
        predictions = [_one(generator, comp, seed) for seed, comp in enumerate(compositions)]
        seconds = time.perf_counter() - start
        rows.append(_row(name, val, predictions, seconds, balanced))
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    predictions = [_same_size(train, comp, rng) for comp in compositions]
    rows.append(_row("random same-size train structure (baseline)", val, predictions, time.perf_counter() - start, balanced))
    return rows


def _row(name: str, val: list[Crystal], predictions: list[Crystal | None], seconds: float, balanced: float) -> dict:
    metrics = csp_metrics(val, predictions)
    return {"arm": name, "data": "perov_5/val", "n": metrics["n"], "k": 1, "match_rate_%": metrics["match_rate"],
            "fit_rate_%": metrics["fit_rate"], "rmse": metrics["rmse"], "no_output": metrics["invalid_samples"],
            "charge_balanced_%": balanced, "seconds": seconds}



if __name__ == "__main__":
    from benchmarks.run_all import run_standalone

    run_standalone(run, __doc__)
