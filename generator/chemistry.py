"""Oxidation states, charge balance and ICSD substitution probabilities for the cheap generators.

* :func:`oxidation_guess`: the most probable charge-balanced assignment of a composition
  (pymatgen ``Composition.oxi_state_guesses`` with its default table: ICSD oxidation states where
  pymatgen has them, else the common ones), cached by reduced formula. A composition of metals
  only (an alloy or intermetallic) counts as balanced with every state 0, as in SMACT.
* :func:`balanced_compositions`: every charge-balanced composition of a chemical system within
  an atom-count limit.
* :class:`SubstitutionScorer`: Hautier et al.'s data-mined substitution probabilities
  (Inorg. Chem. 50, 656, 2011; pymatgen's ``SubstitutionProbability``, shipped with pymatgen,
  offline). The probability of a substitution is the product over the replaced species of
  ``P(target ion | source ion)``.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from functools import lru_cache

from crystaloop.data.crystal import atomic_number

__all__ = ["oxidation_guess", "is_charge_balanced", "balanced_compositions", "SubstitutionScorer", "reduced"]

# the smallest per-ion probability: an ion pair never seen substituting in the ICSD data, or an
# ion outside pymatgen's table (exp(alpha) with pymatgen's alpha = -5, over the largest marginal)
_FLOOR = 1e-6


def reduced(composition: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    """``composition`` divided by the gcd of its counts, as sorted (element, count) pairs."""
    g = math.gcd(*composition.values())
    return tuple(sorted((el, n // g) for el, n in composition.items()))


def _is_metal(element: str) -> bool:
    from pymatgen.core import Element

    el = Element(element)
    return bool(el.is_metal)


@lru_cache(maxsize=65536)
def _guess(formula: tuple[tuple[str, int], ...]) -> tuple[tuple[str, float], ...] | None:
    from pymatgen.core import Composition

    if all(_is_metal(el) for el, _ in formula) or len(formula) == 1:
        return tuple((el, 0.0) for el, _ in formula)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        guesses = Composition(dict(formula)).oxi_state_guesses()
    return tuple(sorted((el, float(q)) for el, q in guesses[0].items())) if guesses else None


def oxidation_guess(composition: Mapping[str, int]) -> dict[str, float] | None:
    """Element → oxidation state (averaged for mixed valence, e.g. Mn 3.5 in LiMn₂O₄) of the most
    probable charge-balanced assignment, ``None`` when there is none. Metals-only compositions
    and elements get 0 for every element."""
    guess = _guess(reduced(composition))
    return dict(guess) if guess is not None else None


def is_charge_balanced(composition: Mapping[str, int]) -> bool:
    """Whether some assignment of common oxidation states makes ``composition`` neutral."""
    return _guess(reduced(composition)) is not None


def balanced_compositions(system: Sequence[str], max_atoms: int, *, num_atoms: int | None = None,
                          min_elements: int = 2) -> list[dict[str, int]]:
    """Charge-balanced cell compositions over subsets of ``system`` with at least
    ``min_elements`` elements, ``num_atoms`` sites (or any count up to ``max_atoms``), only
    reduced formulas (one cell per formula: the formula unit itself), sorted by size then formula."""
    elements = sorted(set(system), key=atomic_number)
    out: dict[tuple, dict[str, int]] = {}
    top = num_atoms or max_atoms
    for k in range(min(max(min_elements, 1), len(elements)), len(elements) + 1):
        for subset in itertools.combinations(elements, k):
            for counts in itertools.product(range(1, top - k + 2), repeat=k):
                total = sum(counts)
                if total > top or math.gcd(*counts) != 1:
                    continue
                composition = dict(zip(subset, counts, strict=True))
                if num_atoms is not None and num_atoms % total:
                    continue
                if is_charge_balanced(composition):
                    if num_atoms is not None:
                        composition = {el: n * (num_atoms // total) for el, n in composition.items()}
                    out[reduced(composition)] = composition
    return sorted(out.values(), key=lambda c: (sum(c.values()), sorted(c.items())))


@lru_cache(maxsize=1)
def _table():  # noqa: ANN202 - pymatgen's SubstitutionProbability (loads in ~2 s)
    from pymatgen.analysis.structure_prediction.substitution_probability import SubstitutionProbability

    return SubstitutionProbability()


class SubstitutionScorer:
    """Log-probabilities of replacing ions, from pymatgen's ICSD-derived lambda table.

    ``log_prob(source_element, target_element, target_state)`` is ``log P(target ion | source
    ion)`` with the source ion taken in the oxidation state that makes the substitution most
    probable (library structures are not oxidation-state-decorated, so the source's state is
    inferred from the target's neighbours in the table); unseen pairs get a floor.
    """

    def __init__(self) -> None:
        table = _table()
        self._table = table
        self._by_element: dict[str, list] = {}
        for species in table.species:
            self._by_element.setdefault(species.symbol, []).append(species)

    def _species(self, element: str, state: float):  # noqa: ANN202 - a pymatgen Species or None
        from pymatgen.core import Species

        try:
            species = Species(element, int(round(state)))
        except ValueError:
            return None
        return species if species in self._table.species else None

    @lru_cache(maxsize=65536)  # noqa: B019 - one scorer per process; the cache is the point
    def _pair(self, source: str, target: str, state: float | None) -> tuple[float, float | None]:
        """(log-probability, source oxidation state it assumes)."""
        if state is None or state == 0:  # no charge state known (alloys, unbalanced): the best ion of the element
            targets = self._by_element.get(target, [])
        else:
            one = self._species(target, state)
            targets = [one] if one is not None else []
        sources = self._by_element.get(source, [])
        if not targets or not sources:
            return (0.0, None) if source == target else (math.log(_FLOOR), None)
        p, best = max(((self._table.cond_prob(t, s), s) for t in targets for s in sources), key=lambda item: item[0])
        return math.log(max(p, _FLOOR)), float(best.oxi_state)

    def anion_only(self, element: str) -> bool:
        """Whether every ion of ``element`` in the table is an anion (O, F, N, ...)."""
        species = self._by_element.get(element, [])
        return bool(species) and all(s.oxi_state < 0 for s in species)

    def log_prob(self, source: str, target: str, state: float | None) -> float:
        """``log P(target in oxidation state | source)``, floored at ``log 1e-6``; ``state``
        ``None`` or 0 (unknown, alloys) takes the target's most probable ion."""
        return self._pair(source, target, state)[0]

    def source_state(self, source: str, target: str, state: float | None) -> float | None:
        """The source element's oxidation state assumed by :meth:`log_prob` (``None``: unknown)."""
        return self._pair(source, target, state)[1]

    def replacements(self, source: str, k: int) -> list[str]:
        """The ``k`` elements most likely to replace ``source`` (any state), most likely first;
        ``source`` itself is left out."""
        return list(self._ranking(source)[:k])

    @lru_cache(maxsize=1024)  # noqa: B019 - see _pair
    def _ranking(self, source: str) -> tuple[str, ...]:
        best: dict[str, float] = {}
        for symbol, species_list in self._by_element.items():
            if symbol != source:
                best[symbol] = max(self.log_prob(source, symbol, float(t.oxi_state)) for t in species_list)
        return tuple(sorted(best, key=lambda el: (-best[el], el)))


@lru_cache(maxsize=1)
def scorer() -> SubstitutionScorer:
    """The process-wide scorer (the table loads once)."""
    return SubstitutionScorer()
