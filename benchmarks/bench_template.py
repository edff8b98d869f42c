"""Symmetry-aware template generator vs no-learning baselines and the shipped 2-step consistency model: CSP match and strict fit at k=1 and k=20 on perov_5/val and carbon_24/val, plus the representation's round trip over every training row, in one run.

Per dataset (the development splits: fitted on ``<name>/train``, measured on ``<name>/val``):

* ``representation``: every training row described
  (:func:`crystaloop.generator.symmetry.describe`: space group + Wyckoff orbits, the loosest
  tolerance of 0.1 / 0.03 / 0.01 / 1e-3 / 1e-5 Å that keeps the atom count) and rebuilt; a row
  round-trips when the rebuilt cell has its composition (or the input is a supercell of it) and
  the project's CSP matcher fits the two strictly. ``invariant_%``: template and lattice
  unchanged under a random rotation, translation, site permutation and basis change
  (:mod:`crystaloop.data.testing`), on the first ``INVARIANCE_ROWS`` rows; ``wyckoff_templates``:
  distinct (space group, Wyckoff letter multiset) among the rows; ``bandwidth``, ``identity_weight``
  and ``loo_match_%``: the prior's kernel width and identity term, fitted by leave-one-out on
  100 training rows, and how often the top template's structure then matched the held-out row;
* ``csp`` rows, one per arm, the same val rows for all arms: ``template, nearest voter`` (this
  issue's generator: templates from the learned prior, free coordinates and lattice from the
  nearest voting training crystal, volume rescaled; the top template at k=1, the 20 most
  probable distinct templates at k=20), ``template, modal voting`` (the campaign default: the k
  structures most of the votes agree on, :mod:`crystaloop.generator.symmetry.modes`), ``substitution train`` (the existing
  :class:`~crystaloop.generator.substitution.SubstitutionGenerator` over the train split, no
  prototypes: the composition-to-template rule), ``random same-size train structure``
  (baseline: k training structures drawn at random among those with the composition's
  per-element counts, elements swapped count for count) and ``consistency 2 steps`` (the shipped
  distilled diffusion model, k independent samples), ``template + projected diffusion`` (the
  template arm with its free parameters redrawn by the shipped teacher, every reverse state
  projected onto the template: ``free_parameters: diffusion``, modal voting, start ``REFINE_START``
  of the schedule, ``REFINE_STEPS`` DDIM steps; chosen on 150 training rows held out of the prior,
  not on val) and ``template modal + projected student`` (the same with the shipped distilled
  student, ``STUDENT_STEPS`` consistency steps);
* ``same composition`` (datasets with more than one element): how often one composition has
  two different structures. The training rows that share a composition are compared with the
  CSP matcher, and so is every val row whose composition the training split holds. perov_5
  enumerates every ordered pair of cations (A on the A site and on the B site are two entries:
  18,928 structures, Xie et al., ICLR 2022, after Castelli et al., Energy Environ. Sci. 2012);
  a random subset then holds both orderings of a composition with probability ``p / (2 − p)``,
  ``p`` = rows / 18,928 (``expected_pairs_if_all_twinned_%``). Where both orderings exist and
  differ, a composition alone cannot say which one a val row is, so no structure prediction can
  expect more than half of those rows at k=1: ``k1_ceiling_%`` = 100 × (1 − ½ × twinned share),
  the twinned share estimated as the observed pair share over the expected one.

Match: :func:`crystaloop.generator.evaluation.csp_metrics` at k=1 (match = ``get_rms_dist``
returns a value; strict fit = ``StructureMatcher.fit``; RMSE normalised by (V/N)^(1/3)) and
:func:`~crystaloop.generator.evaluation.csp_metrics_at_k` at k=20 (any of the 20). Sizes: k=1 on
the first ``CSP_ROWS`` val rows, k=20 on the first ``CSP_K_ROWS`` (the matcher costs 20–70 ms
a call on this machine); ``quick=True`` fits on 300 train rows and scores 12 / 6 val rows.
``seconds`` is sampling time alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np

from benchmarks.csp_arms import Sampler, csp_row, diffusion_sampler, from_generator, same_size_sampler
from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets import load_dataset
from crystaloop.data.matching import structure_matcher

logger = logging.getLogger(__name__)

DATASETS = ("perov_5", "carbon_24")
CSP_ROWS, CSP_K_ROWS, K = 250, 60, 20
REFINE_START, REFINE_STEPS, STUDENT_STEPS = 0.1, 50, 2
PEROV_5_ROWS = 18_928  # the whole perov_5 set (Xie et al., ICLR 2022)
INVARIANCE_ROWS = 100
QUICK = {"train": 300, "csp": 12, "csp_k": 6, "invariance": 5}

def _representation_row(name: str, train: Sequence[Crystal], invariance_rows: int) -> tuple[dict, list]:
    from crystaloop.data import testing as rewrites
    from crystaloop.data.errors import InvalidStructureError
    from crystaloop.generator.symmetry import describe

    matcher = structure_matcher("csp")
    described, failures = [], {"no description": 0, "count": 0, "no strict fit": 0}
    start = time.perf_counter()
    for crystal in train:
        try:
            symmetric, _ = describe(crystal)
        except InvalidStructureError:
            failures["no description"] += 1
            continue
        described.append(symmetric)
        back = symmetric.to_crystal()
        factor = crystal.n_sites // back.n_sites if crystal.n_sites % back.n_sites == 0 else 0
        if not factor or {el: n * factor for el, n in back.composition.items()} != crystal.composition:
            failures["count"] += 1
        elif not matcher.fit(back.to_pymatgen(), crystal.to_pymatgen()):
            failures["no strict fit"] += 1
    seconds = time.perf_counter() - start
    rng = np.random.default_rng(0)
    same = total = 0
    for crystal in train[:invariance_rows]:
        reference, _ = describe(crystal)
        for rewritten in (rewrites.random_rotation(crystal, rng), rewrites.random_translation(crystal, rng),
                          rewrites.permute_sites(crystal, rng)[0], rewrites.change_basis(crystal, rng)):
            other, _ = describe(rewritten)
            total += 1
            same += other.template == reference.template and np.allclose(other.lattice, reference.lattice, rtol=1e-6)
    n = len(train)
    row = {"row": "representation", "data": f"{name}/train", "n": n,
           "round_trip_%": 100.0 * (n - sum(failures.values())) / n,
           "fail_count": failures["count"], "fail_fit": failures["no strict fit"], "fail_describe": failures["no description"],
           "invariant_%": 100.0 * same / total if total else float("nan"), "invariance_rewrites": total,
           "wyckoff_templates": len({(s.space_group, tuple(sorted(o.letter for o in s.orbits))) for s in described}),
           "seconds": seconds}
    return row, described


def _same_composition_row(name: str, train: Sequence[Crystal], val: Sequence[Crystal]) -> dict | None:
    """How often one composition has two different structures (see the module docstring)."""
    from collections import defaultdict

    if all(len(c.composition) == 1 for c in train):
        return None
    matcher = structure_matcher("csp")
    groups: dict[tuple, list[Crystal]] = defaultdict(list)
    for crystal in train:
        groups[tuple(sorted(crystal.composition.items()))].append(crystal)
    pairs = [g for g in groups.values() if len(g) == 2]
    distinct = sum(matcher.get_rms_dist(a.to_pymatgen(), b.to_pymatgen()) is None for a, b in pairs)
    seen = [(c, groups[tuple(sorted(c.composition.items()))]) for c in val if tuple(sorted(c.composition.items())) in groups]
    val_distinct = sum(all(matcher.get_rms_dist(c.to_pymatgen(), t.to_pymatgen()) is None for t in twins) for c, twins in seen)
    row = {"row": "same composition", "data": f"{name}/train", "compositions": len(groups), "pairs": len(pairs),
           "pairs_distinct": distinct, "val_rows_with_a_train_composition": len(seen),
           "val_rows_unlike_that_train_structure": val_distinct}
    if name == "perov_5":
        p = len(train) / PEROV_5_ROWS
        expected, observed = p / (2 - p), len(pairs) / max(len(groups), 1)
        twinned = min(1.0, observed / expected) * distinct / max(len(pairs), 1)
        row.update({"pair_share_%": 100 * observed, "expected_pairs_if_all_twinned_%": 100 * expected,
                    "k1_ceiling_%": 100 * (1 - twinned / 2)})
    return row


def _csp_rows(name: str, arms: dict[str, Sampler], val: Sequence[Crystal], k_rows: int) -> list[dict]:
    return [{"row": "csp", **csp_row(f"{name}/val", arm, sampler, val, k_rows, K)} for arm, sampler in arms.items()]


def run(quick: bool = False) -> list[dict]:
    import torch

    from crystaloop.generator.substitution import SubstitutionGenerator
    from crystaloop.generator.symmetry.descriptors import VolumeModel
    from crystaloop.generator.symmetry.generator import TemplateChoice, TemplateGenerator
    from crystaloop.generator.symmetry.modes import ModalVoting

    torch.set_num_threads(1)
    rows = []
    for name in DATASETS:
        train = list(load_dataset(f"{name}/train", max_rows=QUICK["train"] if quick else None).crystals)
        val = list(load_dataset(f"{name}/val", max_rows=QUICK["csp"] if quick else CSP_ROWS).crystals)
        representation, described = _representation_row(name, train, QUICK["invariance"] if quick else INVARIANCE_ROWS)
        start = time.perf_counter()
        template = TemplateGenerator.from_descriptions(described, VolumeModel(train), loo_rows=20 if quick else 100,
                                                       training_dataset=f"{name}/train")
        prior = template.prior
        representation["prior_fit_seconds"] = time.perf_counter() - start
        representation["bandwidth"] = prior.bandwidth
        representation["identity_weight"] = prior.identity_weight
        representation["loo_match_%"] = 100.0 * prior.loo_accuracy.get((prior.bandwidth, prior.identity_weight), float("nan"))
        rows.append(representation)
        rng = np.random.default_rng(0)
        modal = ModalVoting()
        arms: dict[str, Sampler] = {
            "template, nearest voter": from_generator(template),
            "template, modal voting": from_generator(TemplateGenerator(template.prior, template.volumes, voting=modal,
                                                                       training_dataset=f"{name}/train")),
            "substitution train": from_generator(SubstitutionGenerator(train, prototypes=False, partial=False,
                                                                        charge_balance=name != "carbon_24")),
            "random same-size train structure": same_size_sampler(train, rng),
        }
        consistency = diffusion_sampler(f"{name}_consistency", "consistency", 2)
        if consistency is not None:
            arms["consistency 2 steps (shipped)"] = consistency
        refiner = TemplateChoice(training=f"{name}/train", free_parameters="diffusion", refine_start=REFINE_START,
                                 refine_steps=4 if quick else REFINE_STEPS).refiner()
        arms[f"template modal + projected diffusion (start {REFINE_START:g})"] = from_generator(
            TemplateGenerator(template.prior, template.volumes, training_dataset=f"{name}/train", refiner=refiner, voting=modal))
        student = TemplateChoice(training=f"{name}/train", free_parameters="diffusion", checkpoint=f"{name}_consistency",
                                 refine_start=REFINE_START, refine_steps=STUDENT_STEPS).refiner()
        arms[f"template modal + projected student ({STUDENT_STEPS} steps)"] = from_generator(
            TemplateGenerator(template.prior, template.volumes, training_dataset=f"{name}/train", refiner=student, voting=modal))
        rows += _csp_rows(name, arms, val, QUICK["csp_k"] if quick else CSP_K_ROWS)
        same = _same_composition_row(name, train, load_dataset(f"{name}/val", max_rows=QUICK["csp"] if quick else None).crystals)
        if same is not None:
            rows.append(same)
    return rows


if __name__ == "__main__":
    from benchmarks.run_all import run_standalone

    run_standalone(run, __doc__)
