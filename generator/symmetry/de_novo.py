"""De novo templates for a chemical system: every training template re-dressed with the system's elements.

Structure prediction fixes the composition; de novo generation fixes only the allowed elements
(``Condition.chemical_system``, the outputs' elements a subset of them). Each training crystal
with at most as many elements as the system is a candidate template: its elements go to
distinct elements of the system (the species per orbit), the assignment minimising the summed
squared descriptor distance ``D`` plus the prior's identity weight per element that differs (the
same cost the template prior's votes pay, :mod:`~crystaloop.generator.symmetry.prior`), and the
template weighs ``exp(-D / (2 h²))`` with the prior's bandwidth ``h``. So in Sr-Ti-O a perovskite
trained as BaZrO₃ becomes SrTiO₃ with Sr on the A orbit, and a Ti-on-A assignment costs more than
it is worth.

:func:`de_novo_proposals` returns one single-voter
:class:`~crystaloop.generator.symmetry.prior.TemplateProposal` per training crystal, cheapest
first, with ``log_probability`` the normalised log weight; the generator draws from them.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from crystaloop.data.crystal import atomic_number
from crystaloop.data.errors import CrystaloopError
from crystaloop.generator.symmetry.descriptors import element_descriptor
from crystaloop.generator.symmetry.prior import NoTemplateError, TemplatePrior, TemplateProposal

__all__ = ["de_novo_proposals"]


def de_novo_proposals(prior: TemplatePrior, chemical_system: Sequence[str]) -> list[TemplateProposal]:
    """Every training template dressed with elements of ``chemical_system``, most probable first.

    Raises:
        CrystaloopError: an empty system or an unknown element.
        NoTemplateError: no training crystal has as few elements as the system.
    """
    system = sorted(set(chemical_system), key=atomic_number)
    if not system:
        raise CrystaloopError("de novo template generation needs a chemical system with at least one element, got none")
    descriptors = np.array([element_descriptor(el) for el in system])  # (S, 6); raises on an unknown symbol
    numbers = np.array([atomic_number(el) for el in system])
    by_size: dict[int, list[int]] = {}
    for i, example in enumerate(prior.examples):
        by_size.setdefault(len(example.elements), []).append(i)
    scored: list[tuple[float, int, dict[str, str]]] = []
    for size, members in by_size.items():
        if size > len(system):
            continue
        perms = np.array(list(itertools.permutations(range(len(system)), size)))  # (P, size)
        own = np.array([[element_descriptor(el) for el in prior.examples[i].elements] for i in members])  # (E, size, 6)
        own_z = np.array([[atomic_number(el) for el in prior.examples[i].elements] for i in members])
        pairwise = ((own[:, :, None, :] - descriptors[None, None, :, :]) ** 2).sum(-1)  # (E, size, S)
        if prior.identity_weight:
            pairwise = pairwise + prior.identity_weight * (own_z[:, :, None] != numbers[None, None, :])
        totals = pairwise[:, np.arange(size)[None, :], perms].sum(-1)  # (E, P)
        best = totals.argmin(axis=1)
        for row, i in enumerate(members):
            perm = perms[best[row]]
            assignment = {el: system[perm[j]] for j, el in enumerate(prior.examples[i].elements)}
            scored.append((float(totals[row, best[row]]), i, assignment))
    if not scored:
        raise NoTemplateError(f"no training template has at most {len(system)} elements for the chemical system "
                              f"{'-'.join(system)}")
    scored.sort(key=lambda item: (item[0], item[1]))
    logits = np.array([-d / (2 * prior.bandwidth**2) for d, _, _ in scored])
    logits = logits - np.logaddexp.reduce(logits)
    out = []
    for (distance, i, assignment), log_p in zip(scored, logits, strict=True):
        symmetric = prior.examples[i].symmetric
        orbits = tuple(sorted((o.letter, assignment[o.element]) for o in symmetric.orbits))
        out.append(TemplateProposal(symmetric.space_group, orbits, float(log_p), "primitive", (i,), (assignment,), (distance,)))
    return out
