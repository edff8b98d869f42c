"""Words that constrain: the explicit, unambiguous requirements of a text prompt, as hard constraints.

A prompt such as ``"cubic perovskite, Ti octahedrally coordinated by O"`` names elements (Ti, O)
and a crystal system (cubic). The text latent steers generation only softly; the constraints
parsed here are checked on every sample, so a prompt that names titanium never yields a Ti-free
crystal. :func:`parse_prompt` reads:

* element symbols written case-exact (``Ti``, ``O``), element names (``titanium``, ``oxygen``,
  ``sulphur``/``sulfur``) and anion or oxoanion words (``oxide`` → O, ``nitride`` → N,
  ``titanate`` → Ti + O; :data:`CHEMICAL_WORDS`);
* formulas (``SrTiO3``: these elements in these proportions);
* oxidation states (``Ti4+``, ``Ti(IV)``, ``O2-``);
* exclusions (``lead-free``, ``without Pb``, ``no lead``, ``free of cadmium``);
* a crystal system (``cubic`` … ``triclinic``, ``rhombohedral`` = trigonal) and a space group
  (a Hermann–Mauguin symbol such as ``Pm-3m`` or ``P6_3/mmc``, or ``space group 221``).

What is ambiguous is *not* a constraint and is listed in :attr:`PromptConstraints.ignored`:
symbols that are also English words (``In``, ``As``, ``At``, ``Be``, ``He``, ``No``, ``Am``,
``I``) unless they carry a charge or sit in a formula; a single capital letter right after a
number (``300 K``, ``5 V``: units); all-capital tokens without digits (``BCC``, ``HCP``, ``DFT``);
two different crystal systems; an element both named and excluded. Symmetry is judged by spglib
at ``symprec`` (Å, default 0.1) on the generated cell.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from crystaloop.data.crystal import Crystal
from crystaloop.data.errors import CrystaloopError

__all__ = ["CHEMICAL_WORDS", "CRYSTAL_SYSTEMS", "PromptConstraints", "parse_prompt", "crystal_system_of", "formula_text", "sample_satisfying", "snap_to_symmetry",
           "admissible_targets"]

logger = logging.getLogger("crystaloop.multimodal.prompt")

CRYSTAL_SYSTEMS = ("triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic")
_SYSTEM_WORDS = {name: name for name in CRYSTAL_SYSTEMS} | {"rhombohedral": "trigonal"}
_SYSTEM_TOP = (2, 15, 74, 142, 167, 194, 230)  # last space-group number of each crystal system, in order

CHEMICAL_WORDS: dict[str, tuple[str, ...]] = {
    "hydride": ("H",), "boride": ("B",), "carbide": ("C",), "nitride": ("N",), "oxide": ("O",),
    "fluoride": ("F",), "silicide": ("Si",), "phosphide": ("P",), "sulfide": ("S",), "sulphide": ("S",),
    "chloride": ("Cl",), "arsenide": ("As",), "selenide": ("Se",), "bromide": ("Br",), "telluride": ("Te",),
    "iodide": ("I",), "oxynitride": ("O", "N"), "oxyfluoride": ("O", "F"), "oxychloride": ("O", "Cl"),
    "carbonate": ("C", "O"), "nitrate": ("N", "O"), "silicate": ("Si", "O"), "phosphate": ("P", "O"),
    "sulfate": ("S", "O"), "sulphate": ("S", "O"), "borate": ("B", "O"), "aluminate": ("Al", "O"),
    "titanate": ("Ti", "O"), "zirconate": ("Zr", "O"), "niobate": ("Nb", "O"), "tantalate": ("Ta", "O"),
    "stannate": ("Sn", "O"), "manganate": ("Mn", "O"), "ferrate": ("Fe", "O"), "vanadate": ("V", "O"),
    "chromate": ("Cr", "O"), "molybdate": ("Mo", "O"), "tungstate": ("W", "O"), "cobaltate": ("Co", "O"),
    "nickelate": ("Ni", "O"), "cuprate": ("Cu", "O"), "gallate": ("Ga", "O"), "germanate": ("Ge", "O"),
}  # fmt: skip
"""Anion and oxoanion words → the elements they name (a ``titanate`` contains Ti and O)."""

_AMBIGUOUS_SYMBOLS = frozenset({"In", "As", "At", "Be", "He", "No", "Am", "I"})
_EXTRA_NAMES = {"aluminum": "Al", "cesium": "Cs", "sulfur": "S", "sulphur": "S"}
_AMBIGUOUS_NAMES = frozenset({"lead"})  # an element only when excluded or before a chemical word ("lead titanate")
_NEGATIONS = frozenset({"no", "without", "not", "non", "excluding", "except", "free"})
_ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6, "VII": 7, "VIII": 8}
_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9_/\-]*(?:\([IVX]+\))?[0-9]*[+\-]?|[0-9]+(?:\.[0-9]+)?")
_FORMULA_PART = re.compile(r"([A-Z][a-z]?)([0-9]*)")
_CHARGE = re.compile(r"^([A-Z][a-z]?)(?:([0-9]?)([+\-])|\(([IVX]+)\))$")
_SPACE_GROUP_NUMBER = re.compile(r"(?:space\s*group|spacegroup|sg)\s*(?:no\.?|number|#)?\s*([0-9]{1,3})\b", re.IGNORECASE)


@cache
def _element_names() -> dict[str, str]:
    """Lower-case English element name → symbol (pymatgen's names plus US/UK spellings)."""
    from pymatgen.core.periodic_table import Element

    return {element.long_name.lower(): element.symbol for element in Element} | _EXTRA_NAMES


@cache
def _symbols() -> frozenset[str]:
    from pymatgen.core.periodic_table import Element

    return frozenset(element.symbol for element in Element)


def crystal_system_of(space_group: int) -> str:
    """The crystal system (:data:`CRYSTAL_SYSTEMS`) of an international space-group number 1..230."""
    if not 1 <= space_group <= 230:
        raise CrystaloopError(f"space-group number {space_group} is outside 1..230")
    return next(name for name, top in zip(CRYSTAL_SYSTEMS, _SYSTEM_TOP, strict=True) if space_group <= top)


@dataclass(frozen=True)
class PromptConstraints:
    """What a prompt requires, parsed by :func:`parse_prompt`.

    Attributes:
        text: the prompt as given.
        required: elements every sample must contain (sorted symbols).
        excluded: elements no sample may contain.
        formula: reduced proportions a named formula fixes (``{"Sr": 1, "Ti": 1, "O": 3}``), or ``None``.
        oxidation_states: element → charge the prompt names (``Ti4+`` → ``{"Ti": 4}``).
        crystal_system: one of :data:`CRYSTAL_SYSTEMS`, or ``None``.
        space_group: international number 1..230, or ``None``.
        ignored: words read as possible constraints but left out as ambiguous, with the reason.
    """

    text: str
    required: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    formula: dict[str, int] | None = None
    oxidation_states: dict[str, int] = field(default_factory=dict)
    crystal_system: str | None = None
    space_group: int | None = None
    ignored: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """True when the prompt constrains nothing."""
        return not (self.required or self.excluded or self.formula or self.oxidation_states or self.crystal_system or self.space_group)

    @property
    def formula_text(self) -> str:
        """The named formula as pymatgen writes it (``"SrTiO3"``), or ``""`` when none is named."""
        return formula_text(self.formula) if self.formula else ""

    @property
    def needs_symmetry(self) -> bool:
        return self.crystal_system is not None or self.space_group is not None

    def describe(self) -> str:
        """One line for the user: what the prompt was read to require."""
        parts = []
        if self.formula:
            parts.append(f"formula {formula_text(self.formula)}")
        if self.required:
            parts.append("contains " + ", ".join(self.required))
        if self.excluded:
            parts.append("without " + ", ".join(self.excluded))
        if self.oxidation_states:
            parts.append("oxidation states " + ", ".join(f"{s}{abs(q)}{'+' if q > 0 else '-'}" for s, q in self.oxidation_states.items()))
        if self.space_group is not None:
            parts.append(f"space group {self.space_group}")
        if self.crystal_system is not None:
            parts.append(f"{self.crystal_system} crystal system")
        text = "; ".join(parts) if parts else "no explicit constraint"
        return text + (f" (ignored as ambiguous: {', '.join(self.ignored)})" if self.ignored else "")

    def check_system(self, chemical_system: tuple[str, ...] | None, composition: dict[str, int] | None) -> None:
        """Refuse a prompt that contradicts the chemical system or composition asked for beside it.

        Raises:
            CrystaloopError: a required element outside ``chemical_system``/``composition``, or an
                excluded element inside the composition; the message names them and the override.
        """
        allowed = set(composition or ()) or set(chemical_system or ())
        if allowed:
            outside = [symbol for symbol in self.required if symbol not in allowed]
            if outside:
                raise CrystaloopError(f"the prompt {self.text!r} names {', '.join(outside)}, which the requested elements "
                                      f"{'-'.join(sorted(allowed))} do not include; widen them or pass --no-prompt-constraints")
        banned = [symbol for symbol in self.excluded if composition and symbol in composition]
        if banned:
            raise CrystaloopError(f"the prompt {self.text!r} excludes {', '.join(banned)}, which the composition contains; "
                                  "change one of them or pass --no-prompt-constraints")

    def violations(self, crystal: Crystal, *, symprec: float = 0.1) -> list[str]:
        """What ``crystal`` fails of these constraints, one phrase each (empty when it satisfies all)."""
        return self.composition_violations(crystal) + self.symmetry_violations(crystal, symprec=symprec)

    def composition_violations(self, crystal: Crystal) -> list[str]:
        """The element, formula and oxidation-state constraints ``crystal`` fails."""
        counts = crystal.composition
        problems = [f"no {symbol}" for symbol in self.required if symbol not in counts]
        problems += [f"contains {symbol}" for symbol in self.excluded if symbol in counts]
        if self.formula is not None and _reduced(counts) != self.formula:
            problems.append(f"formula {crystal.reduced_formula}, not {formula_text(self.formula)}")
        if self.oxidation_states and not _admits_states(counts, self.oxidation_states):
            problems.append("no charge-balanced assignment with " + ", ".join(f"{s}{q:+d}" for s, q in self.oxidation_states.items()))
        return problems

    def symmetry_violations(self, crystal: Crystal, *, symprec: float = 0.1) -> list[str]:
        """The space-group and crystal-system constraints ``crystal`` fails at spglib tolerance ``symprec`` (Å)."""
        if not self.needs_symmetry:
            return []
        number = crystal.spacegroup_number(symprec) or 1
        problems = []
        if self.space_group is not None and number != self.space_group:
            problems.append(f"space group {number}, not {self.space_group}")
        if self.crystal_system is not None and crystal_system_of(number) != self.crystal_system:
            problems.append(f"{crystal_system_of(number)}, not {self.crystal_system}")
        return problems


def parse_prompt(text: str) -> PromptConstraints:
    """The explicit constraints of ``text`` (see the module docstring for what is read and what is not).

    Raises:
        CrystaloopError: a space group and a crystal system that contradict each other, or a
            space-group number outside 1..230.
    """
    tokens = _TOKEN.findall(text)
    required: set[str] = set()
    excluded: set[str] = set()
    states: dict[str, int] = {}
    systems: set[str] = set()
    formula: dict[str, int] | None = None
    ignored: list[str] = []
    space_group: int | None = None
    for index, token in enumerate(tokens):
        previous = tokens[index - 1].lower() if index else ""
        negated = previous in _NEGATIONS or (index > 1 and previous == "of" and tokens[index - 2].lower() == "free")
        words = re.split(r"[-/]", token)
        if len(words) > 1 and words[-1].lower() == "free":  # lead-free, Pb-free
            negated, token, words = True, "-".join(words[:-1]), words[:-1]
        following = tokens[index + 1].lower() if index + 1 < len(tokens) else ""
        negated = negated or following == "free"
        elements, reason = _elements_of(token, previous_is_number=bool(re.fullmatch(r"[0-9.]+", previous)))
        if token.lower() in _AMBIGUOUS_NAMES and not negated and following not in CHEMICAL_WORDS:
            elements, reason = set(), "also an English word"
        if reason:
            ignored.append(f"{token} ({reason})")
        if elements:
            (excluded if negated else required).update(elements)
            if not negated:
                charge = _CHARGE.match(token)
                if charge and charge.group(1) in elements:
                    states[charge.group(1)] = _charge_value(charge)
                parts = _formula_parts(token)
                if parts is not None and len(parts) > 1:
                    if formula is not None and _reduced(parts) != formula:
                        ignored.append(f"{token} (a second formula)")
                    else:
                        formula = _reduced(parts)
            continue
        system = _SYSTEM_WORDS.get(token.lower())
        if system is not None and not negated:
            systems.add(system)
            continue
        number = _space_group_symbol(token)
        if number is not None:
            space_group = number
    match = _SPACE_GROUP_NUMBER.search(text)
    if match is not None:
        space_group = int(match.group(1))
        crystal_system_of(space_group)  # range check
    both = required & excluded
    if both:
        ignored += [f"{symbol} (both named and excluded)" for symbol in sorted(both)]
        required -= both
        excluded -= both
    if len(systems) > 1:
        ignored.append(f"{' and '.join(sorted(systems))} (two crystal systems)")
        systems = set()
    crystal_system = next(iter(systems), None)
    if space_group is not None and crystal_system is not None and crystal_system_of(space_group) != crystal_system:
        raise CrystaloopError(f"the prompt {text!r} names space group {space_group} ({crystal_system_of(space_group)}) "
                              f"and a {crystal_system} crystal system; they contradict each other")
    order = _atomic_order()
    return PromptConstraints(
        text=text, required=tuple(sorted(required, key=order)), excluded=tuple(sorted(excluded, key=order)),
        formula=formula, oxidation_states=dict(sorted(states.items(), key=lambda kv: order(kv[0]))),
        crystal_system=crystal_system, space_group=space_group, ignored=tuple(ignored),
    )


def _elements_of(token: str, *, previous_is_number: bool) -> tuple[set[str], str]:
    """(elements a token names, why it was ignored or '')."""
    word = token.lower()
    if word in _element_names():
        return {_element_names()[word]}, ""
    if word in CHEMICAL_WORDS:
        return set(CHEMICAL_WORDS[word]), ""
    charge = _CHARGE.match(token)
    if charge and charge.group(1) in _symbols():
        return {charge.group(1)}, ""
    bare = token.rstrip("+-")
    if bare in _symbols():
        if bare in _AMBIGUOUS_SYMBOLS:
            return set(), "also an English word"
        if len(bare) == 1 and previous_is_number:
            return set(), "a unit after a number"
        return {bare}, ""
    pieces = token.split("-")
    if len(pieces) > 1 and all(piece in _symbols() for piece in pieces):  # a chemical system, Sr-Ti-O
        return set(pieces), ""
    parts = _formula_parts(bare)
    if parts is None or len(parts) < 2:
        return set(), ""
    if bare.isupper() and not any(ch.isdigit() for ch in bare):
        return set(), "an acronym, not a formula"
    return set(parts), ""


def _formula_parts(token: str) -> dict[str, int] | None:
    """Element → count of a formula token such as ``SrTiO3``, or ``None`` when it is not one."""
    if not token or not token[0].isupper():
        return None
    counts: dict[str, int] = {}
    position = 0
    for match in _FORMULA_PART.finditer(token):
        if match.start() != position or match.group(1) not in _symbols():
            return None
        counts[match.group(1)] = counts.get(match.group(1), 0) + int(match.group(2) or 1)
        position = match.end()
    return counts if position == len(token) and counts else None


def _charge_value(match: re.Match[str]) -> int:
    if match.group(4):
        return _ROMAN.get(match.group(4), 0)
    magnitude = int(match.group(2) or 1)
    return magnitude if match.group(3) == "+" else -magnitude


def _space_group_symbol(token: str) -> int | None:
    """The international number of a Hermann–Mauguin symbol token (``Pm-3m``, ``P6_3/mmc``), else ``None``."""
    if not re.fullmatch(r"[PIFABCR][0-9a-z_/\-]+", token) or not re.search(r"[0-9\-/]|^[PIFABCR][a-z]{3}$", token):
        return None
    from pymatgen.symmetry.groups import SpaceGroup

    try:
        return int(SpaceGroup(token).int_number)
    except ValueError:
        return None


def _reduced(counts: dict[str, int]) -> dict[str, int]:
    from math import gcd

    divisor = 0
    for value in counts.values():
        divisor = gcd(divisor, value)
    order = _atomic_order()
    return {symbol: counts[symbol] // divisor for symbol in sorted(counts, key=order)}


def formula_text(counts: dict[str, int]) -> str:
    """``{"O": 3, "Ti": 1, "Sr": 1}`` → ``"SrTiO3"`` (pymatgen's order)."""
    from pymatgen.core import Composition

    return Composition(counts).reduced_formula


def _atomic_order():  # noqa: ANN202 - a sort key
    from crystaloop.data.crystal import atomic_number

    return atomic_number


def _admits_states(counts: dict[str, int], states: dict[str, int]) -> bool:
    """Whether ``counts`` has a charge-balanced oxidation-state assignment with the named ``states``."""
    from pymatgen.core import Composition

    if any(symbol not in counts for symbol in states):
        return False
    guesses = Composition(counts).oxi_state_guesses(oxi_states_override={s: [q] for s, q in states.items()}, max_sites=-1)
    return any(all(abs(guess.get(s, 0) - q) < 1e-6 for s, q in states.items()) for guess in guesses)


SNAP_TOLERANCES = (0.2, 0.35)
"""spglib tolerances (Å) at which a sample that misses only the prompt's symmetry is symmetrised."""


def snap_to_symmetry(crystal: Crystal, constraints: PromptConstraints, *, symprec: float = 0.1,
                     tolerances: Sequence[float] = SNAP_TOLERANCES) -> Crystal | None:
    """``crystal`` symmetrised (spglib's standardised primitive cell) at the first tolerance in
    ``tolerances`` whose result satisfies ``constraints`` at ``symprec``, or ``None``.

    A sample a few tenths of an ångström from the crystal system the prompt asks for is moved onto
    it, as a crystallographer would idealise a refined structure; the number of sites is kept.
    """
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    for tolerance in tolerances:
        try:
            snapped = Crystal.from_pymatgen(SpacegroupAnalyzer(crystal.to_pymatgen(), symprec=tolerance).get_primitive_standard_structure())
        except (ValueError, TypeError):  # spglib found no cell at this tolerance (InvalidStructureError is a ValueError)
            continue
        if snapped.n_sites == crystal.n_sites and not constraints.violations(snapped, symprec=symprec):
            return snapped
    return None


def sample_satisfying(draw: Callable[[int, int], Sequence[Any]], n: int, constraints: PromptConstraints, *,
                      seed: int = 0, max_rounds: int = 6, symprec: float = 0.1,
                      snap_tolerances: Sequence[float] = SNAP_TOLERANCES) -> tuple[list[Any], Counter[str]]:
    """Up to ``n`` candidates that satisfy ``constraints``, drawing more while too few do.

    Args:
        draw: ``draw(count, seed)`` → candidates, each with a ``.crystal``
            (:class:`~crystaloop.data.crystal.Crystal`); called with seeds ``seed``, ``seed + 1``, …
        n: candidates wanted.
        max_rounds: most calls of ``draw``; round ``r`` asks for ``n · 2^min(r, 2)`` candidates.
        snap_tolerances: a candidate that misses only the prompt's crystal system or space group
            is symmetrised at these tolerances (:func:`snap_to_symmetry`) and kept when that fixes
            it (counted under ``"symmetrised"``); ``()`` keeps only samples symmetric as drawn.

    Returns:
        ``(kept, reasons)``: at most ``n`` satisfying candidates in draw order, and how often each
        violation (:meth:`PromptConstraints.violations`) was seen among the rejected ones. Fewer than
        ``n`` kept means the rounds ran out; the caller says so.
    """
    kept: list[Any] = []
    reasons: Counter[str] = Counter()
    for round_index in range(max_rounds):
        for candidate in draw(n * 2 ** min(round_index, 2), seed + round_index):
            if len(kept) >= n:
                break
            problems = constraints.composition_violations(candidate.crystal)
            symmetry = [] if problems else constraints.symmetry_violations(candidate.crystal, symprec=symprec)
            if symmetry and snap_tolerances:
                snapped = snap_to_symmetry(candidate.crystal, constraints, symprec=symprec, tolerances=snap_tolerances)
                if snapped is not None:
                    candidate, symmetry = dataclasses.replace(candidate, crystal=snapped), []
                    reasons["symmetrised"] += 1
            problems += symmetry
            if problems:
                reasons.update(problems)
            else:
                kept.append(candidate)
        logger.info("prompt constraints: round %d, %d of %d kept", round_index + 1, len(kept), n)
        if len(kept) >= n:
            break
    return kept, reasons


def admissible_targets(prompts: Sequence[PromptConstraints], crystals: Sequence[Crystal], *,
                       symprec: float = 0.1) -> np.ndarray:
    """(len(prompts), len(crystals)) bool: ``[i, j]`` True when crystal j satisfies every
    constraint prompt i states (elements, formula, oxidation states, space group, crystal system).

    Each crystal's space group is found once (spglib at ``symprec`` Å), not once per prompt.
    """
    symmetric = any(p.needs_symmetry for p in prompts)
    numbers = [(crystal.spacegroup_number(symprec) or 1) if symmetric else 1 for crystal in crystals]
    out = np.ones((len(prompts), len(crystals)), dtype=bool)
    for i, prompt in enumerate(prompts):
        if prompt.empty:
            continue
        for j, crystal in enumerate(crystals):
            ok = not prompt.composition_violations(crystal)
            if ok and prompt.space_group is not None:
                ok = numbers[j] == prompt.space_group
            if ok and prompt.crystal_system is not None:
                ok = crystal_system_of(numbers[j]) == prompt.crystal_system
            out[i, j] = ok
    return out

