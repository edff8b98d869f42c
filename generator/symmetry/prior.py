"""A template prior learned from a training split: composition → scored (space group, Wyckoff
multiset, element → orbit) templates.

Each training crystal is described once (:func:`~crystaloop.generator.symmetry.representation.describe`).
A query composition can take the template of a training crystal whose primitive (or
conventional) cell has the same multiset of per-element counts; its elements go to the
training crystal's elements count for count, the assignment minimising the summed squared
distance ``D`` between their descriptors plus ``w`` per element that differs (the identity
term: the same element in the same role counts most; ``w = 0`` is pure similarity) (:func:`~crystaloop.generator.symmetry.descriptors.element_descriptor`;
every permutation within each group of equal counts is tried). Every such (training crystal,
assignment) is a vote for the template it yields (its Wyckoff letters with the query's
elements, written in the canonical origin of the representation) with weight
``exp(-D / (2 h²))``, so a template scores

    log p(template | composition) = logsumexp over its votes of -D / (2 h²) - log Z

(a kernel density over the training set in element-descriptor space: frequent templates of
similar compositions win, unseen compositions map onto seen templates by similarity). The
bandwidth ``h`` and the weight ``w`` are fitted on the training split by leave-one-out: the
pair (from a grid) whose top template best predicts held-out training crystals (by default:
most often their own template; the template generator scores a structure match instead). Sampling: the ``k`` best
templates (``temperature = 0``) or ``k`` distinct ones drawn with probability ∝ p^(1/T)
(Gumbel top-k, deterministic per seed). A template always has exactly the query's per-element
counts; a composition no training template can host raises :class:`NoTemplateError`.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from crystaloop.data.crystal import Crystal, atomic_number
from crystaloop.data.errors import CrystaloopError
from crystaloop.generator.symmetry.descriptors import element_descriptor
from crystaloop.generator.symmetry.representation import SymmetricCrystal, describe_training
from crystaloop.generator.symmetry.wyckoff import alternatives, centring_points, metric_keeping_cosets

__all__ = ["TemplatePrior", "TemplateProposal", "NoTemplateError", "BANDWIDTHS", "IDENTITY_WEIGHTS"]

logger = logging.getLogger(__name__)

BANDWIDTHS = (0.5, 1.0, 2.0, 4.0)
"""Kernel bandwidths (descriptor units) the leave-one-out fit chooses from."""
IDENTITY_WEIGHTS = (0.0, 3.0, 10.0)
"""Extra squared distance for a different element (the identity term), the fit's choices."""


class NoTemplateError(CrystaloopError):
    """No training template has the per-element counts of the requested composition."""


@dataclass(frozen=True)
class TemplateProposal:
    """One scored template for a composition.

    Attributes:
        space_group: international number.
        orbits: canonical sorted (Wyckoff letter, element) pairs, elements the query's.
        log_probability: natural log of the template's prior probability for the composition.
        cell: ``"primitive"`` or ``"conventional"``: the cell of the template that has the
            query's counts.
        sources: indices of the training crystals voting for it, best vote first.
        assignments: per source, training element → query element.
        distances: per source, its descriptor distance ``D`` to the query (the vote's cost).
    """

    space_group: int
    orbits: tuple[tuple[str, str], ...]
    log_probability: float
    cell: str
    sources: tuple[int, ...]
    assignments: tuple[dict[str, str], ...]
    distances: tuple[float, ...] = ()

    @property
    def key(self) -> tuple[int, tuple[tuple[str, str], ...]]:
        return self.space_group, self.orbits


@dataclass(frozen=True)
class _Example:
    symmetric: SymmetricCrystal
    elements: tuple[str, ...]
    primitive_counts: tuple[int, ...]
    centring: int
    cosets: tuple[int, ...]  # normaliser cosets that keep this crystal's lattice metric


def _pattern(counts: Sequence[int]) -> tuple[int, ...]:
    return tuple(sorted(counts))


class TemplatePrior:
    """Scores and samples templates for a composition (see the module docstring).

    Args:
        examples: the training crystals' symmetric descriptions.
        bandwidth: kernel bandwidth ``h`` in descriptor units (:meth:`fit` chooses it).
        identity_weight: ``w``, squared-distance penalty per differing element (:meth:`fit` chooses it).
    """

    def __init__(self, examples: Sequence[SymmetricCrystal], *, bandwidth: float = 1.0, identity_weight: float = 0.0) -> None:
        if not examples:
            raise CrystaloopError("a template prior needs at least one training crystal")
        if not bandwidth > 0:
            raise CrystaloopError(f"bandwidth must be > 0, got {bandwidth}")
        if identity_weight < 0:
            raise CrystaloopError(f"identity_weight must be ≥ 0, got {identity_weight}")
        self.bandwidth, self.identity_weight = float(bandwidth), float(identity_weight)
        self.examples = [_example(s) for s in examples]
        self._index: dict[tuple[str, tuple[int, ...]], list[int]] = {}
        for i, example in enumerate(self.examples):
            self._index.setdefault(("primitive", _pattern(example.primitive_counts)), []).append(i)
            if example.centring > 1:
                conventional = tuple(n * example.centring for n in example.primitive_counts)
                self._index.setdefault(("conventional", _pattern(conventional)), []).append(i)
        self._keys: dict[tuple, tuple[tuple[str, int], ...]] = {}
        self._groups: dict[tuple[str, tuple[int, ...]], tuple[np.ndarray, list[tuple[str, ...]], np.ndarray, np.ndarray] | None] = {}
        self.loo_accuracy: dict[tuple[float, float], float] = {}  # (bandwidth, identity weight) → mean LOO score

    @classmethod
    def fit(cls, crystals: Sequence[Crystal], *, bandwidths: Sequence[float] = BANDWIDTHS,
            identity_weights: Sequence[float] = IDENTITY_WEIGHTS, loo_rows: int = 200, seed: int = 0) -> TemplatePrior:
        """Describe ``crystals`` and choose bandwidth and identity weight by leave-one-out on ``loo_rows`` of them.

        A crystal with no symmetric description (spglib fails at every tolerance) is skipped and logged.
        """
        described = describe_training(crystals, user="template prior")
        return cls.fit_descriptions(described, bandwidths=bandwidths, identity_weights=identity_weights, loo_rows=loo_rows,
                                    seed=seed)

    @classmethod
    def fit_descriptions(cls, described: Sequence[SymmetricCrystal], *, bandwidths: Sequence[float] = BANDWIDTHS,
                         identity_weights: Sequence[float] = IDENTITY_WEIGHTS, loo_rows: int = 200, seed: int = 0,
                         score: Callable[[int, TemplateProposal], float] | None = None) -> TemplatePrior:
        """:meth:`fit` for crystals already described: the (bandwidth, identity weight) pair whose
        top template, with each of ``loo_rows`` training crystals held out in turn, scores best
        (ties: the smaller weight, then the larger bandwidth).

        ``score(i, proposal)`` rates the top proposal for held-out crystal ``i``; by default 1
        when its template is crystal ``i``'s own (the template generator passes a structure
        match instead). ``loo_accuracy`` keeps the mean score of every pair.
        """
        if not bandwidths or min(bandwidths) <= 0 or not identity_weights or min(identity_weights) < 0:
            raise CrystaloopError(f"bandwidths must be positive and identity weights ≥ 0, got {list(bandwidths)}, "
                                  f"{list(identity_weights)}")
        prior = cls(described, bandwidth=bandwidths[0], identity_weight=identity_weights[0])
        if score is None:
            def score(i: int, proposal: TemplateProposal) -> float:
                return float(proposal.key == prior.examples[i].symmetric.template)
        rng = np.random.default_rng(seed)
        held_out = rng.permutation(len(described))[:loo_rows]
        totals = {(h, w): 0.0 for h in bandwidths for w in identity_weights}
        for i in held_out:
            example = prior.examples[i]
            counts = dict(zip(example.elements, example.primitive_counts, strict=True))
            for w in identity_weights:
                prior.identity_weight = w
                votes = prior._votes(counts, exclude=int(i))
                for h in bandwidths:
                    top = _proposals(votes, h, limit=1)
                    if top:
                        totals[h, w] += score(int(i), top[0])
        prior.loo_accuracy = {pair: total / max(len(held_out), 1) for pair, total in totals.items()}
        prior.bandwidth, prior.identity_weight = max(totals, key=lambda pair: (totals[pair], -pair[1], pair[0]))
        logger.info("template prior: %d crystals, bandwidth %.3g, identity weight %.3g (leave-one-out score %.3f)",
                    len(described), prior.bandwidth, prior.identity_weight,
                    prior.loo_accuracy.get((prior.bandwidth, prior.identity_weight), float("nan")))
        return prior

    # -- scoring -----------------------------------------------------------------------------

    def _canonical(self, example: _Example, assignment: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        """The template's sorted (letter, element) pairs in the canonical origin, elements assigned."""
        symmetric = example.symmetric
        orbits = tuple((o.letter, assignment[o.element]) for o in symmetric.orbits)
        memo = (symmetric.space_group, orbits, example.cosets)
        if memo not in self._keys:
            table = alternatives(symmetric.space_group)
            best = min(tuple(sorted((table[c][2][letter], atomic_number(el)) for letter, el in orbits)) for c in example.cosets)
            self._keys[memo] = best
        return tuple(sorted((letter, _symbol(z)) for letter, z in self._keys[memo]))

    def _group(self, cell: str, pattern: tuple[int, ...]) -> tuple[np.ndarray, list[tuple[str, ...]], np.ndarray, np.ndarray] | None:
        """(example indices (E,), their elements in slot order, descriptors (E, s, 6), atomic numbers (E, s)) of a count
        pattern; slots ordered by (count, atomic number), so equal counts form contiguous blocks."""
        memo = (cell, pattern)
        if memo not in self._groups:
            members = self._index.get(memo)
            if not members:
                self._groups[memo] = None
            else:
                slots = []
                for i in members:
                    example = self.examples[i]
                    order = sorted(zip(example.primitive_counts, example.elements, strict=True),
                                   key=lambda pair: (pair[0], atomic_number(pair[1])))
                    slots.append(tuple(el for _, el in order))
                descriptors = np.array([[element_descriptor(el) for el in row] for row in slots])
                numbers = np.array([[atomic_number(el) for el in row] for row in slots])
                self._groups[memo] = (np.array(members), slots, descriptors, numbers)
        return self._groups[memo]

    def _votes(self, composition: Mapping[str, int], exclude: int | None = None) -> list[tuple[tuple, str, int, dict[str, str], float]]:
        """(template key, cell, source index, assignment, D) for every training crystal that can host it.

        The best assignment per training crystal is found by enumerating the permutations within
        each block of equal counts (vectorised over the crystals of the pattern).
        """
        query = sorted(composition, key=lambda el: (composition[el], atomic_number(el)))
        counts = tuple(composition[el] for el in query)
        query_desc = np.array([element_descriptor(el) for el in query])
        query_z = np.array([atomic_number(el) for el in query])
        blocks = [[j for j, n in enumerate(counts) if n == count] for count in sorted(set(counts))]
        perms = np.array([sum(choice, ()) for choice in itertools.product(*(itertools.permutations(b) for b in blocks))])
        slots = np.arange(len(query))
        votes = []
        for cell in ("primitive", "conventional"):
            found = self._group(cell, counts)
            if found is None:
                continue
            members, elements, descriptors, numbers = found
            pairwise = ((descriptors[:, :, None, :] - query_desc[None, None, :, :]) ** 2).sum(-1)  # (E, slot, query)
            if self.identity_weight:
                pairwise = pairwise + self.identity_weight * (numbers[:, :, None] != query_z[None, None, :])
            totals = pairwise[:, slots[None, :], perms].sum(-1)  # (E, P)
            best = totals.argmin(axis=1)
            for row, i in enumerate(members):
                if i == exclude:
                    continue
                perm = perms[best[row]]
                assignment = {elements[row][j]: query[perm[j]] for j in slots}
                example = self.examples[int(i)]
                key = (example.symmetric.space_group, self._canonical(example, assignment))
                votes.append((key, cell, int(i), assignment, float(totals[row, best[row]])))
        return votes

    def proposals(self, composition: Mapping[str, int]) -> list[TemplateProposal]:
        """Every template that can host ``composition``, most probable first.

        Raises:
            NoTemplateError: none can (the message names the composition's count pattern and
                the nearest patterns the training split has).
        """
        if not composition or any(int(n) < 1 for n in composition.values()):
            raise CrystaloopError(f"a template prior needs a composition with positive counts, got {dict(composition)}")
        votes = self._votes(composition)
        if not votes:
            pattern = _pattern(list(composition.values()))
            known = sorted({p for (_, p) in self._index}, key=lambda p: (len(p) != len(pattern), abs(sum(p) - sum(pattern))))
            raise NoTemplateError(
                f"no training template hosts {dict(composition)} (per-element counts {list(pattern)}); the training "
                f"split has count patterns such as {[list(p) for p in known[:6]]}")
        return _proposals(votes, self.bandwidth)

    def sample(self, composition: Mapping[str, int], k: int, *, temperature: float = 0.0, seed: int = 0) -> list[TemplateProposal]:
        """``k`` distinct templates for ``composition`` (fewer when fewer exist): the most
        probable ones at ``temperature`` 0, else drawn ∝ p^(1/T) without replacement.

        Raises:
            NoTemplateError: no template hosts the composition.
            CrystaloopError: ``k < 1`` or a negative temperature.
        """
        if k < 1 or temperature < 0:
            raise CrystaloopError(f"need k ≥ 1 and temperature ≥ 0, got k={k}, temperature={temperature}")
        ranked = self.proposals(composition)
        if temperature == 0 or len(ranked) <= 1:
            return ranked[:k]
        logits = np.array([p.log_probability for p in ranked]) / temperature
        gumbel = np.random.default_rng(seed).gumbel(size=len(ranked))
        order = np.argsort(-(logits + gumbel), kind="stable")[:k]
        return [ranked[i] for i in order]


def _proposals(votes: list, bandwidth: float, limit: int | None = None) -> list[TemplateProposal]:
    """Votes grouped by template and ranked by log-probability (the first ``limit``), each
    template's voters best first."""
    groups: dict[tuple, list] = {}
    for vote in votes:
        groups.setdefault(vote[0], []).append(vote)
    if not groups:
        return []
    keys = list(groups)
    scores = np.array([np.logaddexp.reduce([-v[4] / (2 * bandwidth**2) for v in groups[key]]) for key in keys])
    scores = scores - np.logaddexp.reduce(scores)
    out = []
    for i in np.argsort(-scores, kind="stable")[:limit]:
        members = sorted(groups[keys[i]], key=lambda vote: vote[4])
        out.append(TemplateProposal(keys[i][0], keys[i][1], float(scores[i]), members[0][1], tuple(m[2] for m in members),
                                    tuple(m[3] for m in members), tuple(m[4] for m in members)))
    return out


def _symbol(z: int) -> str:
    from crystaloop.data.crystal import element_symbol

    return element_symbol(z)


def _example(symmetric: SymmetricCrystal) -> _Example:
    centring = centring_points(symmetric.space_group)
    counts: dict[str, int] = {}
    for orbit in symmetric.orbits:
        counts[orbit.element] = counts.get(orbit.element, 0) + orbit.multiplicity
    elements = tuple(sorted(counts, key=atomic_number))
    cosets = metric_keeping_cosets(symmetric.space_group, symmetric.conventional_lattice)
    return _Example(symmetric, elements, tuple(counts[el] // centring for el in elements), centring, cosets)
