"""The OPTIMADE ``structures`` fields this server knows: what each is, how filters and sorts reach it.

One registry serves the filter translator (:mod:`crystaloop.data.optimade.filters`), sorting,
``response_fields`` and ``/info/structures``. A field's *target* says what a filter compares:

* :class:`ColumnTarget` — a column of ``candidates`` (``nsites``, ``chemical_formula_reduced``…);
* :class:`ConstantTarget` / :class:`ConstantListTarget` — the same value for every structure
  (``nperiodic_dimensions`` is 3, ``structure_features`` is empty: candidates are ordered 3-D
  crystals);
* :class:`ElementTarget` — the ``candidate_elements`` rows (``elements``, ``species_at_sites``
  whose species are element symbols, ``elements_ratios``);
* :class:`GuardTarget` — guards that passed or failed the candidate (``verdicts``);
* :class:`RecordTarget` — an oracle measurement or a surrogate prediction of one property
  (``_crystaloop_e_above_hull``, ``_crystaloop_measured_<property>``,
  ``_crystaloop_predicted_<property>``, ``_crystaloop_predicted_std_<property>``); the field's
  value is the *smallest* value over oracles (models) that reported it, with status ``ok``;
* :class:`UnknownTarget` — OPTIMADE fields we do not serve and other providers' fields: their
  value is unknown (``null``), so every comparison is false and ``IS UNKNOWN`` true.

Units: Å, Å³, g/cm³, eV/atom (energies above hull), timestamps in UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, func, select

from crystaloop.data.optimade.errors import BadFilterError, OptimadeWarning
from crystaloop.data.store.schema import CandidateRow, MeasurementRow, PredictionRow

__all__ = [
    "PROVIDER_PREFIX",
    "KNOWN_PROVIDER_PREFIXES",
    "FieldType",
    "ColumnTarget",
    "ConstantTarget",
    "ConstantListTarget",
    "ElementTarget",
    "GuardTarget",
    "RecordTarget",
    "UnknownTarget",
    "FieldSpec",
    "FIELDS",
    "STANDARD_UNSERVED",
    "resolve_field",
    "sort_key",
    "entry_info_properties",
]

PROVIDER_PREFIX = "crystaloop"
# Prefixes registered with the OPTIMADE providers list (a snapshot: the list is not fetched).
KNOWN_PROVIDER_PREFIXES = frozenset(
    {
        "aflow", "alexandria", "cod", "exmpl", "httk", "jarvis", "matcloud", "mcloud", "mp", "mpdd", "mpds",
        "mpod", "nmd", "odbx", "omdb", "oqmd", "optimade", "optimake", "pcod", "tcod", "twodmatpedia", "cmr",
        "ccpnc", "ccdc", "aiida", "nomad", "materialscloud",
    }
)

FieldType = Literal["string", "integer", "float", "boolean", "timestamp", "list", "dictionary"]
_C = CandidateRow


@dataclass(frozen=True)
class ColumnTarget:
    """A column of ``candidates``; ``nullable`` columns make comparisons on NULL false (not NULL)."""

    column: Any
    nullable: bool = False


@dataclass(frozen=True)
class ConstantTarget:
    """The same scalar value for every structure."""

    value: Any


@dataclass(frozen=True)
class ConstantListTarget:
    """The same list for every structure."""

    values: tuple[Any, ...]


@dataclass(frozen=True)
class ElementTarget:
    """``candidate_elements``: symbols (``elements``, ``species_at_sites``) or ``ratio`` values."""

    what: Literal["elements", "species_at_sites", "elements_ratios"]


@dataclass(frozen=True)
class GuardTarget:
    """Names of the guards whose verdict on the candidate was ``ok`` (or not)."""

    ok: bool


@dataclass(frozen=True)
class RecordTarget:
    """Smallest ``value``/``mean``/``std`` of ``property`` over a candidate's measurements or predictions."""

    table: Literal["measurements", "predictions"]
    property: str
    value: Literal["value", "mean", "std"]

    def rows(self, candidate_id: ColumnElement[Any]) -> tuple[Any, ColumnElement[bool]]:
        """(value column, condition selecting this candidate's usable rows of this property)."""
        if self.table == "measurements":
            m = MeasurementRow
            return m.value, and_(m.candidate_id == candidate_id, m.property == self.property, m.status == "ok")
        p = PredictionRow
        return getattr(p, self.value), and_(p.candidate_id == candidate_id, p.property == self.property)

    def parts(self) -> tuple[Any, Any, tuple[ColumnElement[bool], ...]]:
        """(candidate id column, value column, conditions selecting usable rows of this property)."""
        if self.table == "measurements":
            m = MeasurementRow
            return m.candidate_id, m.value, (m.property == self.property, m.status == "ok")
        p = PredictionRow
        return p.candidate_id, getattr(p, self.value), (p.property == self.property,)

    def min_value(self) -> Any:
        """Correlated scalar subquery: this field's value for the outer candidate row (sorting)."""
        column, where = self.rows(_C.id)
        return select(func.min(column)).where(where).correlate(_C.__table__).scalar_subquery()


@dataclass(frozen=True)
class UnknownTarget:
    """A field whose value is unknown for every structure."""


Target = (
    ColumnTarget | ConstantTarget | ConstantListTarget | ElementTarget | GuardTarget | RecordTarget | UnknownTarget
)


@dataclass(frozen=True)
class FieldSpec:
    """One field: OPTIMADE type, what filters compare (``None``: not queryable), sortability, unit."""

    name: str
    type: FieldType
    target: Target | None
    sortable: bool = False
    unit: str | None = None
    description: str = ""


_STANDARD: tuple[FieldSpec, ...] = (
    FieldSpec("id", "string", ColumnTarget(_C.id), sortable=True),
    FieldSpec("type", "string", ConstantTarget("structures")),
    FieldSpec("immutable_id", "string", ColumnTarget(_C.id), sortable=True),
    FieldSpec("last_modified", "timestamp", ColumnTarget(_C.updated_at), sortable=True),
    FieldSpec("elements", "list", ElementTarget("elements")),
    FieldSpec("nelements", "integer", ColumnTarget(_C.nelements), sortable=True),
    FieldSpec("elements_ratios", "list", ElementTarget("elements_ratios")),
    FieldSpec(
        "chemical_formula_descriptive", "string", ColumnTarget(_C.chemical_formula_descriptive, True), sortable=True
    ),
    FieldSpec("chemical_formula_reduced", "string", ColumnTarget(_C.chemical_formula_reduced, True), sortable=True),
    FieldSpec("chemical_formula_anonymous", "string", ColumnTarget(_C.chemical_formula_anonymous, True), sortable=True),
    FieldSpec("dimension_types", "list", ConstantListTarget((1, 1, 1))),
    FieldSpec("nperiodic_dimensions", "integer", ConstantTarget(3), sortable=True),
    FieldSpec("lattice_vectors", "list", None, unit="Å"),
    FieldSpec("space_group_it_number", "integer", ColumnTarget(_C.spacegroup_number, True), sortable=True),
    FieldSpec("cartesian_site_positions", "list", None, unit="Å"),
    FieldSpec("nsites", "integer", ColumnTarget(_C.nsites), sortable=True),
    FieldSpec("species", "list", None),
    FieldSpec("species_at_sites", "list", ElementTarget("species_at_sites")),
    FieldSpec("structure_features", "list", ConstantListTarget(())),
)

_P = f"_{PROVIDER_PREFIX}_"
_PROVIDER: tuple[FieldSpec, ...] = (
    FieldSpec(f"{_P}status", "string", ColumnTarget(_C.status), sortable=True,
              description="Where the candidate is in the loop: imported, generated, rejected, scored, selected, evaluated or failed."),
    FieldSpec(f"{_P}campaign", "string", ColumnTarget(_C.campaign_id, True), sortable=True,
              description="Id of the campaign that generated the candidate (null for imported structures)."),
    FieldSpec(f"{_P}iteration", "integer", ColumnTarget(_C.iteration, True), sortable=True,
              description="0-based campaign iteration that generated the candidate."),
    FieldSpec(f"{_P}created_at", "timestamp", ColumnTarget(_C.created_at), sortable=True,
              description="When the candidate was first stored (UTC)."),
    FieldSpec(f"{_P}volume", "float", ColumnTarget(_C.volume), sortable=True, unit="Å^3",
              description="Cell volume."),
    FieldSpec(f"{_P}density", "float", ColumnTarget(_C.density), sortable=True, unit="g/cm^3",
              description="Mass density."),
    FieldSpec(f"{_P}e_above_hull", "float", RecordTarget("measurements", "e_above_hull", "value"), sortable=True,
              unit="eV/atom",
              description="Energy above the convex hull from an oracle (smallest over oracles; null when not measured). "
              "Any measured property can be filtered as _crystaloop_measured_<property>, any predicted one as "
              "_crystaloop_predicted_<property> (mean) and _crystaloop_predicted_std_<property> (std)."),
    FieldSpec(f"{_P}e_above_hull_decomposition", "string", None,
              description="The competing phases the hull puts at this composition, with their atom fractions "
              "(\"0.5 CaO + 0.5 CoF2\"), from the measurement that gives _crystaloop_e_above_hull; null when not "
              "measured or not recorded."),
    FieldSpec(f"{_P}e_above_hull_coverage", "string", None,
              description="What the hull behind _crystaloop_e_above_hull was built from (e.g. \"elements\": elemental "
              "references only, a formation energy rather than a stability verdict; \"prototype\": competing phases "
              "from prototypes); null when not measured or not recorded."),
    FieldSpec(f"{_P}predictions", "list", None,
              description="Surrogate predictions: objects with model, property, mean, std and units."),
    FieldSpec(f"{_P}measurements", "list", None,
              description="Oracle measurements: objects with oracle, property, value, units, status (ok, failed or "
              "unconverged: a relaxation stopped at its step cap, value for inspection only), reason and details "
              "(for e_above_hull the hull's basis, coverage and decomposition)."),
    FieldSpec(f"{_P}verdicts", "list", None,
              description="Guard verdicts: objects with guard, ok, reason and score."),
    FieldSpec(f"{_P}passed_guards", "list", GuardTarget(True), description="Names of the guards the candidate passed."),
    FieldSpec(f"{_P}failed_guards", "list", GuardTarget(False), description="Names of the guards that rejected the candidate."),
    FieldSpec(f"{_P}provenance", "dictionary", None,
              description="Where the candidate came from: component, version, checkpoint and config hashes, seed, source."),
    FieldSpec(f"{_P}condition", "dictionary", None,
              description="What generation was asked for (composition, chemical system, property targets); null if unconditioned."),
)

FIELDS: dict[str, FieldSpec] = {f.name: f for f in _STANDARD + _PROVIDER}
"""Every field this server serves, by name (standard OPTIMADE first, then ``_crystaloop_``)."""

STANDARD_UNSERVED = frozenset(
    {
        "chemical_formula_hill",
        "space_group_symmetry_operations_xyz",
        "space_group_symbol_hall",
        "space_group_symbol_hermann_mauguin",
        "space_group_symbol_hermann_mauguin_extended",
        "assemblies",
    }
)
"""Standard OPTIMADE structure fields this server does not serve: ``null`` when requested."""

_DYNAMIC = re.compile(rf"^{_P}(measured|predicted_std|predicted)_([a-z0-9_]+)$")


def resolve_field(name: str, warnings: list[OptimadeWarning] | None = None) -> FieldSpec:
    """The field called ``name`` in a filter, a sort or ``response_fields``.

    Other providers' fields and unserved standard fields resolve to an unknown field (a warning
    is added for prefixes that are not in the OPTIMADE providers list).

    Raises:
        BadFilterError: an unprefixed name that is not an OPTIMADE structures field, or a
            ``_crystaloop_`` name this server does not define (the message lists ours).
    """
    spec = FIELDS.get(name)
    if spec is not None:
        return spec
    dynamic = _DYNAMIC.match(name)
    if dynamic:
        kind, prop = dynamic.groups()
        target = {
            "measured": RecordTarget("measurements", prop, "value"),
            "predicted": RecordTarget("predictions", prop, "mean"),
            "predicted_std": RecordTarget("predictions", prop, "std"),
        }[kind]
        return FieldSpec(name, "float", target, sortable=True)
    if name in STANDARD_UNSERVED:
        return FieldSpec(name, "string", UnknownTarget())
    if name.startswith("_") and not name.startswith(_P):
        prefix = name[1:].split("_", 1)[0]
        if prefix not in KNOWN_PROVIDER_PREFIXES and warnings is not None:
            warnings.append(
                OptimadeWarning(
                    "UnknownProviderProperty",
                    f"Field {name!r} has an unrecognised prefix: this property has been treated as UNKNOWN.",
                )
            )
        return FieldSpec(name, "string", UnknownTarget())
    if name.startswith(_P):
        ours = ", ".join(f.name for f in _PROVIDER)
        raise BadFilterError(
            f"{name!r} is not a {PROVIDER_PREFIX} field; known: {ours}, and _crystaloop_measured_<property>, "
            "_crystaloop_predicted_<property>, _crystaloop_predicted_std_<property>"
        )
    known = ", ".join(f.name for f in _STANDARD)
    raise BadFilterError(f"{name!r} is not a known or searchable quantity of structures; known: {known}")


def sort_key(name: str) -> Any:
    """The SQL expression to order by for a sortable field.

    Raises:
        BadFilterError: unknown field, or one that cannot be sorted (lists, dictionaries).
    """
    spec = resolve_field(name)
    if not spec.sortable:
        sortable = ", ".join(f.name for f in FIELDS.values() if f.sortable)
        raise BadFilterError(f"field {name!r} cannot be used for sorting; sortable fields: {sortable}", parameter="sort")
    target = spec.target
    if isinstance(target, ColumnTarget):
        return target.column
    if isinstance(target, RecordTarget):
        return target.min_value()
    return None  # a constant: every row ties


@cache
def _standard_descriptions() -> dict[str, tuple[str, str | None]]:
    """Field → (first paragraph of the OPTIMADE description, unit) from the optimade package's models."""
    from optimade.models.entries import EntryResource
    from optimade.models.structures import StructureResourceAttributes

    out: dict[str, tuple[str, str | None]] = {}
    model_fields = {**EntryResource.model_fields, **StructureResourceAttributes.model_fields}
    for name, info in model_fields.items():
        text = (info.description or "").strip().split("\n\n")[0].strip()
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        out[name] = (text, extra.get("x-optimade-unit"))  # type: ignore[arg-type]
    return out


def entry_info_properties() -> dict[str, dict[str, Any]]:
    """``data.properties`` of ``/info/structures``: description, type, sortable (and unit) per field."""
    standard = _standard_descriptions()
    properties: dict[str, dict[str, Any]] = {}
    for spec in FIELDS.values():
        description, unit = standard.get(spec.name, (spec.description, spec.unit))
        entry: dict[str, Any] = {"description": description or spec.description or spec.name, "type": spec.type}
        entry["sortable"] = spec.sortable
        if unit or spec.unit:
            entry["unit"] = unit or spec.unit
        properties[spec.name] = entry
    return properties
