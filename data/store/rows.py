"""Conversions between records (:class:`Candidate` and friends) and the store's table rows.

Everything here is pure: plain dicts ready for a Core ``INSERT`` on one side, records on the
other. Crystal arrays are written with ``json.dumps`` (``repr`` of each float, so they read back
bit-for-bit); provenance and condition as their pydantic JSON.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from math import gcd
from typing import Any

from crystaloop.data.crystal import Crystal
from crystaloop.data.errors import StoreError
from crystaloop.data.records import Candidate, CandidateStatus, Condition, Measurement, Provenance, Verdict

__all__ = [
    "candidate_row",
    "element_rows",
    "prediction_rows",
    "measurement_rows",
    "verdict_rows",
    "formulas",
    "anonymous_formula",
    "optimade_formulas",
    "row_to_candidate",
    "dedupe",
]

"""Rounding of the canonical hash that :attr:`Candidate.id` uses (its default)."""


def anonymous_formula(counts: Sequence[int]) -> str:
    """OPTIMADE ``chemical_formula_anonymous``: reduced counts, largest first, letters A, B, … Z, Aa, Ba …"""
    divisor = 0
    for n in counts:
        divisor = gcd(divisor, int(n))
    reduced = sorted((int(n) // max(divisor, 1) for n in counts), reverse=True)
    parts = []
    for i, n in enumerate(reduced):
        letter = chr(ord("A") + i % 26) + (chr(ord("a") + i // 26 - 1) if i >= 26 else "")
        parts.append(letter + (str(n) if n != 1 else ""))
    return "".join(parts)


@lru_cache(maxsize=65536)
def formulas(composition: tuple[tuple[str, int], ...]) -> tuple[str, str]:
    """(reduced formula as pymatgen writes it, anonymous formula) of ``((symbol, count), …)``."""
    from pymatgen.core import Composition

    return Composition(dict(composition)).reduced_formula, anonymous_formula([n for _, n in composition])


@lru_cache(maxsize=65536)
def optimade_formulas(composition: tuple[tuple[str, int], ...]) -> tuple[str, str]:
    """(OPTIMADE ``chemical_formula_reduced``, ``chemical_formula_descriptive``) of ``((symbol, count), …)``.

    The reduced formula lists the elements alphabetically with the counts divided by their
    greatest common divisor and no ``1`` (``"O3SrTi"``; pure elements are ``"O"``, unlike
    pymatgen's ``"O2"``). The descriptive formula is the cell's own formula in pymatgen's
    electronegativity order, counts not reduced (``"Na4Cl4"`` for the conventional rock-salt cell).
    """
    from pymatgen.core import Composition

    counts = {symbol: int(n) for symbol, n in composition}
    divisor = 0
    for n in counts.values():
        divisor = gcd(divisor, n)
    divisor = max(divisor, 1)
    reduced = "".join(s + (str(counts[s] // divisor) if counts[s] != divisor else "") for s in sorted(counts))
    order = [token.rstrip("0123456789.") for token in Composition(counts).formula.split()]
    descriptive = "".join(s + (str(counts[s]) if counts[s] != 1 else "") for s in order)
    return reduced, descriptive


def _finite_or_none(value: float | None) -> float | None:
    """NaN becomes NULL (SQLite cannot store NaN; PostgreSQL is made to match); ±inf is kept."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def candidate_row(
    candidate: Candidate, candidate_id: str, now: dt.datetime, *, compute_spacegroup: bool = True
) -> dict[str, Any]:
    """The ``candidates`` row of ``candidate`` (derived columns computed here)."""
    crystal = candidate.crystal
    composition = crystal.composition
    reduced, anonymous = formulas(tuple(composition.items()))
    optimade_reduced, descriptive = optimade_formulas(tuple(composition.items()))
    elements = sorted(composition)
    provenance = candidate.provenance
    return {
        "id": candidate_id,
        "lattice": json.dumps(crystal.lattice.tolist()),
        "frac_coords": json.dumps(crystal.frac_coords.tolist()),
        "numbers": json.dumps(crystal.numbers.tolist()),
        "reduced_formula": reduced,
        "chemical_formula_anonymous": anonymous,
        "chemical_formula_reduced": optimade_reduced,
        "chemical_formula_descriptive": descriptive,
        "elements": ",".join(elements),
        "nelements": len(elements),
        "nsites": crystal.n_sites,
        "spacegroup_number": crystal.spacegroup_number() if compute_spacegroup else None,
        "volume": crystal.volume,
        "density": crystal.density,
        "status": candidate.status.value,
        "campaign_id": provenance.campaign,
        "iteration": provenance.iteration,
        "provenance_json": provenance.model_dump_json(),
        "condition_json": candidate.condition.model_dump_json() if candidate.condition is not None else None,
        "created_at": now,
        "updated_at": now,
    }


def element_rows(
    candidate_id: str, elements: str, composition: Mapping[str, int] | None = None
) -> list[dict[str, Any]]:
    """``candidate_elements`` rows from the comma-joined element string of a candidate row.

    With ``composition`` (symbol → number of sites) each row also gets its ``count`` and its
    ``ratio`` (count / sites in the cell, the OPTIMADE ``elements_ratios`` entry); without it
    both are NULL.
    """
    total = sum(int(n) for n in composition.values()) if composition else 0
    return [
        {
            "candidate_id": candidate_id,
            "element": e,
            "count": int(composition[e]) if composition else None,
            "ratio": int(composition[e]) / total if composition else None,
        }
        for e in elements.split(",")
    ]


def prediction_rows(
    candidate_id: str, predictions: Mapping[str, Any], model: str, now: dt.datetime
) -> list[dict[str, Any]]:
    """``predictions`` rows from property → (mean, std, units)."""
    rows = []
    for prop, value in predictions.items():
        try:
            mean, std, units = value
            mean, std = float(mean), float(std)
        except (TypeError, ValueError):
            raise StoreError(
                f"prediction {prop!r} of candidate {candidate_id} must be (mean, std, units), got {value!r}"
            ) from None
        rows.append(
            {
                "candidate_id": candidate_id,
                "model": model,
                "property": str(prop),
                "mean": _finite_or_none(mean),
                "std": _finite_or_none(std),
                "units": str(units),
                "created_at": now,
            }
        )
    return rows


def measurement_rows(candidate_id: str, measurements: Iterable[Measurement], now: dt.datetime) -> list[dict[str, Any]]:
    """``measurements`` rows (a NaN value of a failed measurement is stored as NULL, empty details as NULL)."""
    rows = []
    for m in measurements:
        if not isinstance(m, Measurement):
            raise StoreError(f"measurements must be Measurement records, got {type(m).__name__} {m!r}")
        rows.append(
            {
                "candidate_id": candidate_id,
                "oracle": m.oracle,
                "property": m.property,
                "value": _finite_or_none(m.value),
                "units": m.units,
                "status": m.status,
                "reason": m.reason,
                "details_json": json.dumps(m.details) if m.details else None,
                "created_at": now,
            }
        )
    return rows


def verdict_rows(candidate_id: str, verdicts: Iterable[Verdict], now: dt.datetime) -> list[dict[str, Any]]:
    """``verdicts`` rows (a NaN score is stored as NULL)."""
    rows = []
    for v in verdicts:
        if not isinstance(v, Verdict):
            raise StoreError(f"verdicts must be Verdict records, got {type(v).__name__} {v!r}")
        rows.append(
            {
                "candidate_id": candidate_id,
                "guard": v.guard,
                "ok": bool(v.ok),
                "reason": v.reason,
                "score": _finite_or_none(v.score),
                "created_at": now,
            }
        )
    return rows


def dedupe(rows: list[dict[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """``rows`` with one row per key (the last one wins, like re-recording), in first-seen order."""
    by_key: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        by_key[tuple(row[k] for k in keys)] = row  # an existing key keeps its position
    return list(by_key.values())


def row_to_candidate(
    row: Mapping[str, Any],
    predictions: Sequence[Mapping[str, Any]] = (),
    measurements: Sequence[Mapping[str, Any]] = (),
    verdicts: Sequence[Mapping[str, Any]] = (),
) -> Candidate:
    """Rebuild a :class:`Candidate` from its row and its records' rows.

    Predictions are read in recording order, so when several models predicted the same
    property the latest value wins (a :class:`Candidate` holds one value per property).
    """
    # The id is this crystal's canonical hash (computed from these very arrays at insert);
    # passing it spares the recomputation whenever a caller reads `candidate.id`.
    crystal = Crystal.from_dict(
        {"lattice": json.loads(row["lattice"]), "frac_coords": json.loads(row["frac_coords"]), "numbers": json.loads(row["numbers"])},
        known_hash=row["id"],
    )
    condition_json = row["condition_json"]
    nan = float("nan")
    return Candidate(
        crystal=crystal,
        provenance=Provenance.model_validate_json(row["provenance_json"]),
        condition=Condition.model_validate_json(condition_json) if condition_json is not None else None,
        status=CandidateStatus(row["status"]),
        verdicts=tuple(
            Verdict(guard=v["guard"], ok=bool(v["ok"]), reason=v["reason"], score=v["score"]) for v in verdicts
        ),
        predictions={
            p["property"]: (
                p["mean"] if p["mean"] is not None else nan,
                p["std"] if p["std"] is not None else nan,
                p["units"],
            )
            for p in predictions
        },
        measurements=tuple(
            Measurement(
                oracle=m["oracle"],
                property=m["property"],
                value=m["value"],
                units=m["units"],
                status=m["status"],
                reason=m["reason"],
                details=json.loads(m["details_json"]) if m.get("details_json") else {},
            )
            for m in measurements
        ),
    )
