"""Substitution generator: ion exchange and partial substitution into known structures.

A library of structures (a dataset, the store's imported structures, and the prototype library
of :mod:`crystaloop.data.prototypes`) is turned into new candidates by

* **ion exchange**: every element of a library structure replaced by another (Sr→Ba, Ti→Zr);
* **partial substitution**: part of one element's sites given to a second element; the sites
  are a union of whole symmetry orbits (Wyckoff sets) of the parent where that gives the wanted
  count, else subsets of its sites, de-duplicated (symmetry-distinct outcomes only);
* **prototype filling**: the roles of a prototype (cations A, B; anion X) filled with the
  condition's ions, scaled by their radii.

Every option is ranked by the ICSD-derived substitution probability of its ion replacements
(:class:`~crystaloop.generator.chemistry.SubstitutionScorer`); a prototype fill counts each
role as one replacement of probability ``prototype_probability``. Only charge-balanced outcomes
(common oxidation states) are kept, volumes are rescaled by the ions' radii (the cell volume
times Σ r_new³ / Σ r_old³), outputs pass :func:`~crystaloop.data.crystal.check_plausible` and are
unique by canonical hash.

Modes follow the condition: ``composition`` → structure prediction (outputs have that reduced
formula, as the requested cell where a supercell reaches it); ``chemical_system`` → de novo
within those elements; neither → each library element replaced by one of its ``replacements``
most probable substitutes. ``exclude`` and ``max_atoms`` (constructor) hold in every mode;
``num_atoms`` of the condition is honoured exactly.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from crystaloop import __version__
from crystaloop.data.crystal import Crystal, atomic_number, check_plausible
from crystaloop.data.errors import CrystaloopError, InvalidStructureError
from crystaloop.data.records import Candidate, Condition, Provenance
from crystaloop.generator.base import ElementSymbols, GeneratorSettings
from crystaloop.generator.chemistry import oxidation_guess, reduced, scorer

__all__ = ["SubstitutionGenerator", "SubstitutionChoice", "Substitution", "load_library"]

logger = logging.getLogger(__name__)

VolumeRule = Literal["radii", "none"]


@dataclass(frozen=True)
class Substitution:
    """One ranked outcome: the crystal, its log-probability and where it came from."""

    crystal: Crystal
    log_prob: float
    origin: str


@dataclass(frozen=True)
class _Plan:
    """A ranked option before its structure is built.

    ``source`` ≥ 0 indexes the library, < 0 is prototype ``-source - 1``; ``mapping`` maps
    each source element (or prototype role) to its target element; ``split`` = (source
    element, second element, number of that element's sites it takes)."""

    log_prob: float
    source: int
    mapping: tuple[tuple[str, str], ...]
    split: tuple[str, str, int] | None
    states: tuple[tuple[str, float | None], ...]


def load_library(specs: Sequence[str]) -> tuple[list[Crystal], list[str]]:
    """Crystals and labels from dataset specs (``perov_5/train``, a CIF folder, an extxyz) and
    ``store:<SQLAlchemy URL>`` (the store's imported structures)."""
    from crystaloop.data.datasets import load_dataset

    crystals: list[Crystal] = []
    labels: list[str] = []
    for spec in specs:
        if spec.startswith("store:"):
            from crystaloop.data.store import CandidateStore
            from crystaloop.data.store.queries import MAX_LIMIT

            with CandidateStore(spec[len("store:"):]) as store:
                found = store.query({"status": ["imported"], "limit": MAX_LIMIT, "order_by": "id"})
            crystals += [c.crystal for c in found]
            labels += [f"store#{c.id[:12]}" for c in found]
        else:
            dataset = load_dataset(spec)
            crystals += list(dataset.crystals)
            labels += [f"{spec}#{i}" for i in range(len(dataset.crystals))]
    return crystals, labels


class SubstitutionGenerator:
    """Ion exchange, partial substitution and prototype filling, ranked by ICSD substitution
    probabilities (see the module docstring).

    Args:
        library: structures to substitute into.
        labels: one label per library structure for provenance (default ``library#i``).
        prototypes: also fill the prototype library (:data:`crystaloop.data.prototypes.PROTOTYPES`;
            for binary compositions no prototype covers, pymatgen's AFLOW binaries when ``aflow``).
        partial: also enumerate partial substitutions.
        exclude: elements that never appear in an output.
        max_atoms: most sites per output cell.
        temperature: 0 → the most probable outcomes in order; > 0 → drawn without replacement
            with probability ∝ p^(1/temperature) (Gumbel top-k, deterministic per seed).
        volume: ``radii`` (rescale by Σ r³) or ``none``.
        replacements: with no chemical system, how many most-probable substitutes per element.
        partial_bases: de novo: partial substitutions start from this many best base options.
        max_partial_sets: most site subsets tried per partial substitution.
        charge_balance: keep only charge-balanced outcomes (metals-only count as balanced).
        prototype_probability: per-role probability given to a prototype fill.
        training_dataset: dataset spec the library came from (novelty reference for the loop).
    """

    def __init__(
        self,
        library: Sequence[Crystal] = (),
        *,
        labels: Sequence[str] | None = None,
        prototypes: bool = True,
        aflow: bool = True,
        partial: bool = True,
        exclude: Iterable[str] = (),
        max_atoms: int = 40,
        temperature: float = 0.0,
        volume: VolumeRule = "radii",
        replacements: int = 4,
        partial_bases: int = 200,
        max_partial_sets: int = 16,
        charge_balance: bool = True,
        prototype_probability: float = 0.01,
        training_dataset: str | None = None,
        name: str = "substitution",
    ) -> None:
        if labels is not None and len(labels) != len(library):
            raise CrystaloopError(f"{len(labels)} labels for {len(library)} library structures; give one per structure")
        if volume not in ("radii", "none"):
            raise CrystaloopError(f"volume rule {volume!r} is unknown; allowed: none, radii")
        if not library and not prototypes:
            raise CrystaloopError("a substitution generator needs a library, prototypes, or both")
        for symbol in exclude:
            atomic_number(symbol)
        if max_atoms < 1 or temperature < 0 or not 0 < prototype_probability <= 1:
            raise CrystaloopError(
                f"need max_atoms ≥ 1, temperature ≥ 0 and 0 < prototype_probability ≤ 1; got {max_atoms}, "
                f"{temperature}, {prototype_probability}"
            )
        self.library = list(library)
        self.labels = list(labels) if labels is not None else [f"library#{i}" for i in range(len(self.library))]
        self.use_prototypes, self.aflow, self.partial = prototypes, aflow, partial
        self.exclude = frozenset(exclude)
        self.max_atoms, self.temperature, self.volume = max_atoms, temperature, volume
        self.replacements, self.partial_bases, self.max_partial_sets = replacements, partial_bases, max_partial_sets
        self.charge_balance, self.prototype_probability = charge_balance, prototype_probability
        self.training_dataset, self.name = training_dataset, name
        self.last_shortfall = 0
        self.last_dropped = 0  # the CLI's count of collapsed samples; these generators drop none
        self._groups: dict[tuple[tuple[str, int], ...], list[int]] = {}
        for i, crystal in enumerate(self.library):
            self._groups.setdefault(tuple(sorted(crystal.composition.items())), []).append(i)

    # -- ranking -----------------------------------------------------------------------------

    def _states(self, composition: Mapping[str, int]) -> dict[str, float | None] | None:
        guess = oxidation_guess(composition)
        if guess is None:
            return None if self.charge_balance else dict.fromkeys(composition)
        return {el: (q if q != 0 else None) for el, q in guess.items()}

    def _admissible(self, composition: Mapping[str, int], condition: Condition | None) -> bool:
        if set(composition) & self.exclude or sum(composition.values()) > self.max_atoms:
            return False
        if condition is not None and condition.chemical_system is not None and not set(composition) <= set(condition.chemical_system):
            return False
        return condition is None or condition.num_atoms is None or sum(composition.values()) == condition.num_atoms

    def _score(self, source: Mapping[str, int], mapping: Mapping[str, str], split, states) -> float:  # noqa: ANN001
        table = scorer()
        total = sum(table.log_prob(s, t, states[t]) for s, t in mapping.items())
        if split is not None:
            total += table.log_prob(split[0], split[1], states[split[1]])
        return total

    def _plan(self, index: int, source: Mapping[str, int], mapping: Mapping[str, str], split, condition) -> _Plan | None:  # noqa: ANN001
        composition: dict[str, int] = {}
        for s, n in source.items():
            taken = split[2] if split is not None and split[0] == s else 0
            composition[mapping[s]] = composition.get(mapping[s], 0) + n - taken
            if taken:
                composition[split[1]] = composition.get(split[1], 0) + taken
        if not self._admissible(composition, condition):
            return None
        states = self._states(composition)
        if states is None or not _signs_agree(mapping, split, states):
            return None
        score = self._score(source, mapping, split, states)
        return _Plan(score, index, tuple(sorted(mapping.items())), split, tuple(sorted(states.items())))

    def plans(self, condition: Condition | None = None) -> list[_Plan]:
        """Every admissible option, most probable first (ties in a fixed order)."""
        if condition is not None and condition.composition is not None:
            plans = self._csp_plans(condition)
        else:
            plans = self._denovo_plans(condition)
        return sorted(plans, key=lambda p: (-p.log_prob, p.source, p.mapping, p.split or ()))

    def _csp_plans(self, condition: Condition) -> list[_Plan]:
        target = dict(condition.composition or {})
        formula = _formula(target)
        banned = sorted(set(target) & self.exclude)
        if banned:
            raise CrystaloopError(f"composition {formula} uses excluded element(s) {banned}")
        if self.charge_balance and oxidation_guess(target) is None:
            raise CrystaloopError(
                f"composition {formula} is not charge-balanced in common oxidation states; the substitution generator "
                "keeps charge-balanced outcomes only (set charge_balance: false to allow it)"
            )
        unit = dict(reduced(target))
        plans: list[_Plan] = []
        for composition_key, members in self._groups.items():
            source = dict(composition_key)
            size = sum(source.values())
            if size % sum(unit.values()):
                continue
            z = size // sum(unit.values())
            wanted = {el: n * z for el, n in unit.items()}
            options = [(m, None) for m in _bijections(source, wanted)]
            if self.partial and len(wanted) == len(source) + 1:
                for t1, t2 in itertools.permutations(wanted, 2):
                    if wanted[t1] < wanted[t2] or (wanted[t1] == wanted[t2] and t1 > t2):
                        continue
                    merged = {el: n for el, n in wanted.items() if el not in (t1, t2)} | {t1: wanted[t1] + wanted[t2]}
                    for m in _bijections(source, merged):
                        s = next(k for k, v in m.items() if v == t1)
                        options.append((m, (s, t2, wanted[t2])))
            for mapping, split in options:
                plan = self._plan(members[0], source, mapping, split, None)
                if plan is not None:
                    plans += [_Plan(plan.log_prob, i, plan.mapping, plan.split, plan.states) for i in members]
        if self.use_prototypes:
            plans += self._prototype_plans([unit], condition)
        return plans

    def _denovo_plans(self, condition: Condition | None) -> list[_Plan]:
        system = condition.chemical_system if condition is not None else None
        allowed = sorted(set(system) - self.exclude) if system is not None else None
        table = scorer()
        base: list[_Plan] = []
        identities: list[_Plan] = []
        for composition_key, members in self._groups.items():
            source = dict(composition_key)
            elements = list(source)
            if allowed is not None:
                choices = [allowed] * len(elements)
            else:
                choices = [[s, *table.replacements(s, self.replacements)] for s in elements]
                choices = [[t for t in c if t not in self.exclude] for c in choices]
            for targets in itertools.product(*choices):
                if len(set(targets)) < len(targets):
                    continue
                mapping = dict(zip(elements, targets, strict=True))
                plan = self._plan(members[0], source, mapping, None, condition)
                if plan is None:
                    continue
                plans = [_Plan(plan.log_prob, i, plan.mapping, None, plan.states) for i in members]
                (identities if all(s == t for s, t in mapping.items()) else base).extend(plans)
        out = list(base)
        if self.partial:
            out += self._partial_plans(sorted(base + identities, key=lambda p: -p.log_prob)[: self.partial_bases], allowed, condition)
        if self.use_prototypes and allowed:
            units = _units(allowed, self.max_atoms if condition is None or condition.num_atoms is None else condition.num_atoms)
            out += self._prototype_plans(units, condition)
        return out

    def _partial_plans(self, bases: list[_Plan], allowed: list[str] | None, condition: Condition | None) -> list[_Plan]:
        table = scorer()
        out = []
        for plan in bases:
            source = self.library[plan.source].composition
            mapping = dict(plan.mapping)
            for s, n in source.items():
                extra = allowed if allowed is not None else table.replacements(s, self.replacements)
                for t2 in extra:
                    if t2 == mapping[s] or t2 in self.exclude:
                        continue
                    for k in range(1, n):
                        new = self._plan(plan.source, source, mapping, (s, t2, k), condition)
                        if new is not None:
                            out.append(new)
        return out

    def _prototype_plans(self, units: list[dict[str, int]], condition: Condition | None) -> list[_Plan]:
        from crystaloop.data.prototypes import PROTOTYPES

        out = []
        log_role = math.log(self.prototype_probability)
        for index, prototype in enumerate(PROTOTYPES):
            roles = dict(prototype.stoichiometry)
            for unit in units:
                if sorted(unit.values()) != sorted(roles.values()) or set(unit) & self.exclude:
                    continue
                states = self._states(unit)
                if states is None:
                    continue
                for mapping in _bijections(roles, unit):
                    if not _roles_fit(mapping, states):
                        continue
                    out.append(_Plan(log_role * len(roles), -index - 1, tuple(sorted(mapping.items())), None, tuple(sorted(states.items()))))
        return out

    # -- building ----------------------------------------------------------------------------

    def _build(self, plan: _Plan, condition: Condition | None) -> list[tuple[Crystal, str]]:
        states = dict(plan.states)
        mapping = dict(plan.mapping)
        if plan.source < 0:
            return self._build_prototype(plan, mapping, states)
        crystal = self.library[plan.source]
        symbols = [mapping[s] for s in crystal.symbols]
        label = f"{self.labels[plan.source]}: " + ", ".join(f"{s}→{t}" for s, t in mapping.items() if s != t)
        if plan.split is None:
            variants = [(symbols, label.rstrip(": ") or label)]
        else:
            s, t2, k = plan.split
            variants = []
            for subset in _site_subsets(crystal, s, k, self.max_partial_sets):
                new = list(symbols)
                for i in subset:
                    new[i] = t2
                variants.append((new, f"{label}{', ' if label[-2:] != ': ' else ''}{s}→{t2} on {k} of {crystal.composition[s]} sites"))
        out = []
        for new_symbols, origin in variants:
            built = Crystal.from_symbols(crystal.lattice, crystal.frac_coords, new_symbols)
            if self.volume == "radii":
                built = _rescaled(built, crystal, states, plan, mapping)
            out.append((_to_requested_cell(built, condition), origin))
        return out

    def _build_prototype(self, plan: _Plan, mapping: dict[str, str], states: dict[str, float | None]) -> list[tuple[Crystal, str]]:
        from crystaloop.data.prototypes import PROTOTYPES, ion_radius

        prototype = PROTOTYPES[-plan.source - 1]
        radii = {role: ion_radius(el, _int_state(states[el])) for role, el in mapping.items()}
        try:
            crystal = prototype.build(mapping, radii)
        except ValueError as exc:
            logger.debug("prototype %s with %s failed: %s", prototype.name, mapping, exc)
            return []
        return [(crystal, f"prototype {prototype.name}: " + ", ".join(f"{r}={e}" for r, e in mapping.items()))]

    def ranked(self, condition: Condition | None = None, *, n: int | None = None, seed: int = 0) -> list[Substitution]:
        """Up to ``n`` (default all) built, plausible, unique outcomes in rank order (Gumbel-perturbed
        by ``seed`` when ``temperature`` > 0)."""
        plans = self.plans(condition)
        if self.use_prototypes and self.aflow and condition is not None and condition.composition is not None:
            if not any(p.source < 0 for p in plans) and len(condition.composition) == 2:
                return self._ranked_list(plans, condition, n, seed, extra=self._aflow(condition))
        return self._ranked_list(plans, condition, n, seed)

    def _ranked_list(self, plans: list[_Plan], condition: Condition | None, n: int | None, seed: int,
                     extra: Sequence[tuple[Crystal, str]] = ()) -> list[Substitution]:
        keys = np.array([p.log_prob for p in plans], dtype=float)
        if self.temperature > 0 and len(plans):
            gumbel = np.random.default_rng(seed).gumbel(size=len(plans))
            order = np.argsort(-(keys / self.temperature + gumbel), kind="stable")
        else:
            order = np.arange(len(plans))
        seen: set[str] = set()
        out: list[Substitution] = []
        for log_prob, crystal, origin in self._outcomes([plans[i] for i in order], condition, extra):
            if not self._keep(crystal, condition):
                continue
            key = crystal.canonical_hash()
            if key in seen:
                continue
            seen.add(key)
            out.append(Substitution(crystal, log_prob, origin))
            if n is not None and len(out) >= n:
                break
        return out

    def _outcomes(self, plans: list[_Plan], condition: Condition | None, extra: Sequence[tuple[Crystal, str]]):  # noqa: ANN202
        for plan in plans:
            for crystal, origin in self._build(plan, condition):
                yield plan.log_prob, crystal, origin
        for crystal, origin in extra:  # AFLOW fills: two roles of the prototype prior
            yield 2 * math.log(self.prototype_probability), crystal, origin

    def _keep(self, crystal: Crystal, condition: Condition | None) -> bool:
        try:
            check_plausible(crystal)
        except InvalidStructureError as exc:
            logger.debug("dropped an implausible substitution: %s", exc)
            return False
        if condition is not None and condition.num_atoms is not None and crystal.n_sites != condition.num_atoms:
            return False
        return crystal.n_sites <= self.max_atoms and not set(crystal.elements) & self.exclude

    def _aflow(self, condition: Condition) -> list[tuple[Crystal, str]]:
        """AFLOW binary prototypes filled with a binary composition (cation: the less
        electronegative element)."""
        from pymatgen.core import Element

        from crystaloop.data.prototypes import aflow_binaries, ion_radius, scaled_to_radii

        unit = dict(reduced(dict(condition.composition or {})))
        states = self._states(unit) or dict.fromkeys(unit)
        cation, anion = sorted(unit, key=lambda el: (Element(el).X, el))
        out = []
        for label, structure in aflow_binaries(unit[cation], unit[anion]):
            filled = structure.copy()
            filled.replace_species({"Li": cation, "Cl": anion})
            radii = {"A": ion_radius(cation, _int_state(states[cation])), "X": ion_radius(anion, _int_state(states[anion]))}
            try:
                crystal = scaled_to_radii(filled, {"A": cation, "X": anion}, radii)
            except (ValueError, InvalidStructureError):
                continue
            out.append((_to_requested_cell(crystal, condition), f"AFLOW prototype {label}: A={cation}, X={anion}"))
        return out

    def sample(self, n: int, condition: Condition | None = None, *, seed: int) -> list[Candidate]:
        """The ``n`` best (or, with a temperature, sampled) unique substitutions; fewer when the
        library cannot give ``n`` (``last_shortfall`` says how many fewer).

        Raises:
            CrystaloopError: no admissible outcome at all, naming the condition.
        """
        if n < 1:
            raise CrystaloopError(f"n must be ≥ 1, got {n}")
        found = self.ranked(condition, n=n, seed=seed)
        if not found:
            raise CrystaloopError(
                f"no charge-balanced substitution fits the condition ({_describe(condition)}) with at most "
                f"{self.max_atoms} atoms{', excluding ' + ', '.join(sorted(self.exclude)) if self.exclude else ''}; "
                f"library: {len(self.library)} structures{' and the prototypes' if self.use_prototypes else ''}"
            )
        self.last_shortfall = n - len(found)
        if self.last_shortfall:
            logger.info("%s: %d of %d requested substitutions exist", self.name, len(found), n)
        return [
            Candidate(crystal=s.crystal, provenance=Provenance(component=self.name, version=__version__, seed=seed, source=s.origin),
                      condition=condition)
            for s in found
        ]


# -- helpers ---------------------------------------------------------------------------------


def _formula(composition: Mapping[str, int]) -> str:
    return "".join(f"{el}{n if n != 1 else ''}" for el, n in composition.items())


def _describe(condition: Condition | None) -> str:
    if condition is None:
        return "no condition"
    parts = []
    if condition.composition:
        parts.append(f"composition {_formula(condition.composition)}")
    if condition.chemical_system:
        parts.append(f"chemical system {'-'.join(condition.chemical_system)}")
    if condition.num_atoms:
        parts.append(f"{condition.num_atoms} atoms")
    return ", ".join(parts) or "no condition"


def _int_state(state: float | None) -> int | None:
    return None if state is None or state == 0 else int(round(state))


def _bijections(source: Mapping[str, int], target: Mapping[str, int]) -> list[dict[str, str]]:
    """Every one-to-one map of ``source`` keys onto ``target`` keys that preserves counts."""
    if sorted(source.values()) != sorted(target.values()):
        return []
    by_count: dict[int, tuple[list[str], list[str]]] = {}
    for el, n in source.items():
        by_count.setdefault(n, ([], []))[0].append(el)
    for el, n in target.items():
        by_count[n][1].append(el)
    parts = [[dict(zip(src, perm, strict=True)) for perm in itertools.permutations(tgt)] for src, tgt in by_count.values()]
    return [{k: v for d in combo for k, v in d.items()} for combo in itertools.product(*parts)]


def _signs_agree(mapping: Mapping[str, str], split: tuple[str, str, int] | None, states: Mapping[str, float | None]) -> bool:
    """No cation replaced by an anion or the reverse (the source's state as the scorer infers it)."""
    table = scorer()
    pairs = list(mapping.items()) + ([(split[0], split[1])] if split is not None else [])
    for s, t in pairs:
        q = states[t]
        if q is None:  # a metal in an alloy may not take an anion's sites
            if table.anion_only(s) and not table.anion_only(t):
                return False
            continue
        q_source = table.source_state(s, t, q)
        if q_source is not None and (q < 0) != (q_source < 0):
            return False
    return True


def _roles_fit(mapping: Mapping[str, str], states: Mapping[str, float | None]) -> bool:
    """Anion roles (``X``) hold anions, cation roles cations (unknown states fit anything)."""
    for role, el in mapping.items():
        q = states[el]
        if q is not None and (q < 0) != (role == "X"):
            return False
    return True


def _units(elements: Sequence[str], max_atoms: int) -> list[dict[str, int]]:
    """Charge-balanced formula units over ``elements`` for prototype filling."""
    from crystaloop.generator.chemistry import balanced_compositions

    return balanced_compositions(elements, min(max_atoms, 7))


def _site_subsets(crystal: Crystal, element: str, k: int, cap: int) -> list[tuple[int, ...]]:
    """Sets of ``k`` sites of ``element``: unions of whole symmetry orbits first, then (if none
    has ``k`` sites) plain subsets, at most ``cap``."""
    import spglib

    sites = [i for i, s in enumerate(crystal.symbols) if s == element]
    try:
        dataset = spglib.get_symmetry_dataset((crystal.lattice, crystal.frac_coords, crystal.numbers), symprec=0.1)
        equivalent = np.asarray(dataset.equivalent_atoms) if dataset is not None else np.arange(crystal.n_sites)
    except Exception:  # spglib raises on degenerate cells; every site its own orbit then
        equivalent = np.arange(crystal.n_sites)
    orbits: dict[int, list[int]] = {}
    for i in sites:
        orbits.setdefault(int(equivalent[i]), []).append(i)
    groups = list(orbits.values())
    out = []
    for r in range(1, len(groups)):
        for combo in itertools.combinations(groups, r):
            if sum(len(g) for g in combo) == k:
                out.append(tuple(sorted(i for g in combo for i in g)))
    if not out:
        out = list(itertools.islice(itertools.combinations(sites, k), cap))
    return out[:cap]


def _rescaled(built: Crystal, parent: Crystal, states: Mapping[str, float | None], plan: _Plan, mapping: Mapping[str, str]) -> Crystal:
    """``built`` with its volume scaled by Σ r_new³ / Σ r_old³ over sites (ionic radii where both
    ions' states are known, atomic radii otherwise)."""
    from crystaloop.data.prototypes import ion_radius

    table = scorer()
    old = new = 0.0
    for s, t in zip(parent.symbols, built.symbols, strict=True):
        q_new = _int_state(states[t])
        q_old = table.source_state(s, t, states[t]) if s != t else q_new
        q_old = _int_state(q_old)
        if q_new is None or q_old is None:
            q_new = q_old = None
        old += ion_radius(s, q_old) ** 3
        new += ion_radius(t, q_new) ** 3
    factor = (new / old) ** (1.0 / 3.0) if old > 0 else 1.0
    return Crystal(built.lattice * factor, built.frac_coords, built.numbers)


def _to_requested_cell(crystal: Crystal, condition: Condition | None) -> Crystal:
    """A supercell (along the shortest lattice vector) when the condition asks for a cell that
    is an integer multiple of ``crystal``'s."""
    if condition is None or condition.composition is None:
        return crystal
    wanted = sum(condition.composition.values())
    if wanted <= crystal.n_sites or wanted % crystal.n_sites:
        return crystal
    m = wanted // crystal.n_sites
    axis = int(np.argmin(np.linalg.norm(crystal.lattice, axis=1)))
    scale = np.ones(3, dtype=int)
    scale[axis] = m
    lattice = crystal.lattice * scale[:, None]
    shifts = np.array([[i if a == axis else 0 for a in range(3)] for i in range(m)], dtype=float)
    frac = (crystal.frac_coords[None, :, :] + shifts[:, None, :]).reshape(-1, 3) / scale
    return Crystal(lattice, frac, np.tile(crystal.numbers, m))



class SubstitutionChoice(GeneratorSettings):
    """A campaign's ``substitution`` generator (``generator: {kind: substitution, library: [perov_5/train]}``).

    Attributes:
        library: dataset specs and ``store:<URL>`` (the store's imported structures) to substitute into.
        prototypes: also fill the prototype library.
        partial: also partial substitutions (a symmetry-distinct subset of sites).
        temperature: 0 → most probable substitutions first; > 0 → sampled.
        exclude: elements never used.
        max_atoms: most sites per cell (``None``: the generator's default, 40).
    """

    kind: Literal["substitution"] = "substitution"
    library: tuple[str, ...] = Field((), description="dataset specs and store:<URL> to substitute into")
    prototypes: bool = Field(True, description="also fill the prototype library")
    partial: bool = Field(True, description="also partial substitutions")
    temperature: float = Field(0.0, ge=0, description="0 = most probable first; > 0 = sampled")
    exclude: ElementSymbols = Field((), description="elements never used")
    max_atoms: int | None = Field(None, gt=0, description="most sites per cell")

    @model_validator(mode="after")
    def _has_a_source(self) -> SubstitutionChoice:
        if not self.library and not self.prototypes:
            raise ValueError("generator kind 'substitution' needs library: [dataset specs or store:<URL>] or prototypes: true")
        return self

    def build(self) -> SubstitutionGenerator:
        crystals, labels = load_library(self.library)
        datasets = [spec for spec in self.library if not spec.startswith("store:")]
        limit = {"max_atoms": self.max_atoms} if self.max_atoms is not None else {}
        return SubstitutionGenerator(crystals, labels=labels, prototypes=self.prototypes, partial=self.partial,
                                     exclude=self.exclude, temperature=self.temperature,
                                     training_dataset=datasets[0] if len(datasets) == 1 else None, **limit)
