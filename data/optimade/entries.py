"""Candidate rows → OPTIMADE ``structures`` resources (JSON-ready dicts), field by field.

Only the requested fields are computed: a ``response_fields=nsites`` page never parses the crystal
arrays, and records (predictions, measurements, verdicts) are loaded only for the fields that show
them. Candidates are ordered, periodic 3-D crystals, so ``species`` are the elements themselves
(one chemical symbol, concentration 1), ``dimension_types`` is ``[1, 1, 1]`` and
``structure_features`` is empty. Lengths in Å, volumes in Å³, densities in g/cm³, energies above
hull in eV/atom, timestamps RFC 3339 in UTC.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ase.data import chemical_symbols

from crystaloop.data.optimade.errors import BadFilterError, OptimadeWarning
from crystaloop.data.optimade.fields import FIELDS, PROVIDER_PREFIX, RecordTarget, UnknownTarget, resolve_field

__all__ = [
    "TOP_LEVEL_FIELDS",
    "DEFAULT_FIELDS",
    "parse_response_fields",
    "tables_for",
    "structure_document",
    "document_to_cif",
    "decomposition_text",
    "timestamp",
]

TOP_LEVEL_FIELDS = frozenset({"id", "type"})
DEFAULT_FIELDS: tuple[str, ...] = tuple(name for name in FIELDS if name not in TOP_LEVEL_FIELDS)
"""Attributes of a resource when ``response_fields`` is not given: every field this server serves."""

_P = f"_{PROVIDER_PREFIX}_"
_NEEDS: dict[str, str] = {
    f"{_P}e_above_hull": "measurements",
    f"{_P}e_above_hull_decomposition": "measurements",
    f"{_P}e_above_hull_coverage": "measurements",
    f"{_P}measurements": "measurements",
    f"{_P}predictions": "predictions",
    f"{_P}verdicts": "verdicts",
    f"{_P}passed_guards": "verdicts",
    f"{_P}failed_guards": "verdicts",
}


def timestamp(value: dt.datetime | None) -> str | None:
    """RFC 3339 text of a UTC timestamp (``2026-01-31T12:00:00.123456Z``)."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def parse_response_fields(text: str | None, warnings: list[OptimadeWarning] | None = None) -> tuple[str, ...]:
    """The attribute names a ``response_fields`` value asks for (``None``: :data:`DEFAULT_FIELDS`).

    ``id`` and ``type`` are always returned at the top level and dropped here; standard fields this
    server does not serve and other providers' fields come back as ``null``.

    Raises:
        BadFilterError: a name that is neither an OPTIMADE structures field nor one of ours.
    """
    if text is None:
        return DEFAULT_FIELDS
    names: list[str] = []
    for raw in text.split(","):
        name = raw.strip()
        if not name or name in TOP_LEVEL_FIELDS or name in names:
            continue
        try:
            resolve_field(name, warnings)
        except BadFilterError as exc:
            raise BadFilterError(f"unknown field in response_fields: {exc}", parameter="response_fields") from None
        names.append(name)
    return tuple(names)


def tables_for(fields: Iterable[str]) -> set[str]:
    """Record tables (``predictions``, ``measurements``, ``verdicts``) the ``fields`` need loaded."""
    needed = set()
    for name in fields:
        if name in _NEEDS:
            needed.add(_NEEDS[name])
        elif name.startswith(_P) and name not in FIELDS:
            target = resolve_field(name).target
            if isinstance(target, RecordTarget):
                needed.add(target.table)
    return needed


class _Structure:
    """Lazily derived views of one candidate row (arrays parsed at most once)."""

    def __init__(self, row: Mapping[str, Any], records: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        self.row = row
        self.records = records
        self._lattice: list[list[float]] | None = None
        self._frac: list[list[float]] | None = None
        self._numbers: list[int] | None = None

    @property
    def lattice(self) -> list[list[float]]:
        if self._lattice is None:
            self._lattice = json.loads(self.row["lattice"])
        return self._lattice

    @property
    def numbers(self) -> list[int]:
        if self._numbers is None:
            self._numbers = json.loads(self.row["numbers"])
        return self._numbers

    def cartesian(self) -> list[list[float]]:
        if self._frac is None:
            self._frac = json.loads(self.row["frac_coords"])
        a, b, c = self.lattice
        return [
            [f0 * a[k] + f1 * b[k] + f2 * c[k] for k in range(3)]
            for f0, f1, f2 in self._frac
        ]

    def elements(self) -> list[str]:
        return self.row["elements"].split(",")

    def ratios(self) -> list[float]:
        counts = Counter(chemical_symbols[z] for z in self.numbers)
        total = len(self.numbers)
        return [counts[e] / total for e in self.elements()]

    def species(self) -> list[dict[str, Any]]:
        return [{"name": e, "chemical_symbols": [e], "concentration": [1.0]} for e in self.elements()]

    def guards(self, ok: bool) -> list[str]:
        return [v["guard"] for v in self.records.get("verdicts", ()) if bool(v["ok"]) == ok]

    def smallest(self, target: RecordTarget) -> float | None:
        key = "value" if target.table == "measurements" else target.value
        values = [
            r[key]
            for r in self.records.get(target.table, ())
            if r["property"] == target.property and r[key] is not None and r.get("status", "ok") == "ok"
        ]
        return min(values) if values else None

    def hull_details(self) -> dict[str, Any]:
        """``details`` of the e_above_hull measurement behind ``_crystaloop_e_above_hull`` (the
        smallest ``ok`` value), ``{}`` when there is none or it recorded none."""
        rows = [
            r
            for r in self.records.get("measurements", ())
            if r["property"] == "e_above_hull" and r["value"] is not None and r.get("status", "ok") == "ok"
        ]
        if not rows:
            return {}
        return _json_or_none(min(rows, key=lambda r: r["value"]).get("details_json")) or {}


def decomposition_text(details: Mapping[str, Any]) -> str | None:
    """``"0.5 CaO + 0.5 CoF2"`` from a hull measurement's ``details["decomposition"]`` (atom
    fractions, 4 significant digits), ``None`` when it has none."""
    phases = details.get("decomposition") or []
    parts = [f"{float(p['fraction']):.4g} {p['formula']}" for p in phases if "formula" in p and "fraction" in p]
    return " + ".join(parts) or None


def _json_or_none(text: str | None) -> Any:
    return json.loads(text) if text is not None else None


_ATTRIBUTES: dict[str, Callable[[_Structure], Any]] = {
    "immutable_id": lambda s: s.row["id"],
    "last_modified": lambda s: timestamp(s.row["updated_at"]),
    "elements": _Structure.elements,
    "nelements": lambda s: s.row["nelements"],
    "elements_ratios": _Structure.ratios,
    "chemical_formula_descriptive": lambda s: s.row["chemical_formula_descriptive"],
    "chemical_formula_reduced": lambda s: s.row["chemical_formula_reduced"],
    "chemical_formula_anonymous": lambda s: s.row["chemical_formula_anonymous"],
    "dimension_types": lambda s: [1, 1, 1],
    "nperiodic_dimensions": lambda s: 3,
    "lattice_vectors": lambda s: s.lattice,
    "space_group_it_number": lambda s: s.row["spacegroup_number"],
    "cartesian_site_positions": _Structure.cartesian,
    "nsites": lambda s: s.row["nsites"],
    "species": _Structure.species,
    "species_at_sites": lambda s: [chemical_symbols[z] for z in s.numbers],
    "structure_features": lambda s: [],
    f"{_P}status": lambda s: s.row["status"],
    f"{_P}campaign": lambda s: s.row["campaign_id"],
    f"{_P}iteration": lambda s: s.row["iteration"],
    f"{_P}created_at": lambda s: timestamp(s.row["created_at"]),
    f"{_P}volume": lambda s: s.row["volume"],
    f"{_P}density": lambda s: s.row["density"],
    f"{_P}e_above_hull": lambda s: s.smallest(RecordTarget("measurements", "e_above_hull", "value")),
    f"{_P}e_above_hull_decomposition": lambda s: decomposition_text(s.hull_details()),
    f"{_P}e_above_hull_coverage": lambda s: s.hull_details().get("coverage"),
    f"{_P}predictions": lambda s: [
        {k: p[k] for k in ("model", "property", "mean", "std", "units")} for p in s.records.get("predictions", ())
    ],
    f"{_P}measurements": lambda s: [
        {k: m[k] for k in ("oracle", "property", "value", "units", "status", "reason")}
        | {"details": _json_or_none(m.get("details_json")) or {}}
        for m in s.records.get("measurements", ())
    ],
    f"{_P}verdicts": lambda s: [
        {"guard": v["guard"], "ok": bool(v["ok"]), "reason": v["reason"], "score": v["score"]}
        for v in s.records.get("verdicts", ())
    ],
    f"{_P}passed_guards": lambda s: s.guards(True),
    f"{_P}failed_guards": lambda s: s.guards(False),
    f"{_P}provenance": lambda s: _json_or_none(s.row["provenance_json"]),
    f"{_P}condition": lambda s: _json_or_none(s.row["condition_json"]),
}


def _attribute(structure: _Structure, name: str) -> Any:
    compute = _ATTRIBUTES.get(name)
    if compute is not None:
        return compute(structure)
    target = resolve_field(name).target
    if isinstance(target, RecordTarget):
        return structure.smallest(target)
    if isinstance(target, UnknownTarget) or target is None:
        return None
    return None  # pragma: no cover - every served field has an attribute function


def structure_document(
    row: Mapping[str, Any],
    fields: Sequence[str] = DEFAULT_FIELDS,
    records: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    *,
    self_link: str | None = None,
) -> dict[str, Any]:
    """The OPTIMADE resource object of one ``candidates`` row with the requested attributes.

    Args:
        row: a full ``candidates`` row as a mapping.
        fields: attribute names (from :func:`parse_response_fields`).
        records: ``{"predictions" | "measurements" | "verdicts": [row mappings]}`` of this
            candidate, needed for the fields in :func:`tables_for`.
        self_link: URL of the single-entry endpoint, put under ``links.self``.
    """
    structure = _Structure(row, records or {})
    document: dict[str, Any] = {
        "id": row["id"],
        "type": "structures",
        "attributes": {name: _attribute(structure, name) for name in fields},
    }
    if self_link is not None:
        document["links"] = {"self": self_link}
    return document


def document_to_cif(document: Mapping[str, Any]) -> str:
    """CIF text of a structures document (needs ``lattice_vectors``, ``cartesian_site_positions``
    and ``species_at_sites`` among its attributes), headed by a comment with its id."""
    from pymatgen.core import Structure
    from pymatgen.io.cif import CifWriter

    attributes = document["attributes"]
    structure = Structure(
        attributes["lattice_vectors"],
        attributes["species_at_sites"],
        attributes["cartesian_site_positions"],
        coords_are_cartesian=True,
    )
    return f"# crystaloop candidate {document['id']}\n{CifWriter(structure)}"
