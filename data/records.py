"""Records that travel between components: Candidate, Condition, Prediction, Measurement, Verdict.

Components talk through these (and numpy arrays); none of them holds torch tensors. Records with
only plain fields are pydantic models (validated, JSON round-trip); records holding arrays or a
:class:`~crystaloop.data.crystal.Crystal` are frozen dataclasses with explicit checks.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from crystaloop.data.crystal import Crystal, atomic_number
from crystaloop.data.errors import StatusTransitionError

__all__ = [
    "CandidateStatus",
    "ALLOWED_TRANSITIONS",
    "check_transition",
    "Condition",
    "Provenance",
    "Verdict",
    "Measurement",
    "MeasurementStatus",
    "Prediction",
    "Candidate",
]


class CandidateStatus(enum.StrEnum):
    """Where a candidate is in its life.

    ``generated → rejected | scored → selected → evaluated | failed``; ``imported`` marks known
    structures brought in by ``crystaloop data import`` (reference data, not campaign output).
    """

    IMPORTED = "imported"
    GENERATED = "generated"
    REJECTED = "rejected"
    SCORED = "scored"
    SELECTED = "selected"
    EVALUATED = "evaluated"
    FAILED = "failed"


ALLOWED_TRANSITIONS: Mapping[CandidateStatus, frozenset[CandidateStatus]] = {
    CandidateStatus.IMPORTED: frozenset(),
    CandidateStatus.GENERATED: frozenset({CandidateStatus.REJECTED, CandidateStatus.SCORED}),
    CandidateStatus.SCORED: frozenset({CandidateStatus.SELECTED, CandidateStatus.REJECTED}),
    CandidateStatus.SELECTED: frozenset({CandidateStatus.EVALUATED, CandidateStatus.FAILED}),
    CandidateStatus.REJECTED: frozenset(),
    CandidateStatus.EVALUATED: frozenset(),
    CandidateStatus.FAILED: frozenset(),
}


def check_transition(current: CandidateStatus | str, new: CandidateStatus | str) -> None:
    """Raise :class:`StatusTransitionError` unless ``current → new`` is allowed (or a no-op)."""
    current, new = CandidateStatus(current), CandidateStatus(new)
    if current == new:
        return
    allowed = ALLOWED_TRANSITIONS[current]
    if new not in allowed:
        names = ", ".join(sorted(s.value for s in allowed)) or "nothing (final status)"
        raise StatusTransitionError(f"cannot move a candidate from {current.value!r} to {new.value!r}; allowed: {names}")


class Condition(BaseModel):
    """What generation was asked for.

    Attributes:
        composition: element → count for crystal-structure prediction (composition fixed).
        chemical_system: allowed elements for de novo generation, e.g. ``["Sr", "Ti", "O"]``.
        properties: property name → target value (units of that property, e.g. eV/atom).
        embedding: a multimodal latent vector (d,) to condition on.
        guidance_scale: classifier-free guidance weight; 1.0 is plain conditional sampling.
        num_atoms: sites per cell for de novo generation; drawn from data when ``None``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    composition: dict[str, int] | None = None
    chemical_system: tuple[str, ...] | None = None
    properties: dict[str, float] = Field(default_factory=dict)
    embedding: tuple[float, ...] | None = None
    guidance_scale: float = Field(1.0, ge=0.0)
    num_atoms: int | None = Field(None, gt=0)

    @field_validator("composition")
    @classmethod
    def _check_composition(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        if value is None:
            return None
        for symbol, count in value.items():
            atomic_number(symbol)
            if count <= 0:
                raise ValueError(f"composition count for {symbol} must be positive, got {count}")
        return dict(sorted(value.items(), key=lambda kv: atomic_number(kv[0])))

    @field_validator("chemical_system")
    @classmethod
    def _check_system(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        for symbol in value:
            atomic_number(symbol)
        return tuple(sorted(set(value)))

    @field_validator("properties", "embedding")
    @classmethod
    def _finite(cls, value: Any) -> Any:
        values = value.values() if isinstance(value, dict) else (value or ())
        for v in values:
            if not math.isfinite(v):
                raise ValueError(f"condition values must be finite, got {v}")
        return value

    @model_validator(mode="after")
    def _composition_within_system(self) -> Condition:
        if self.composition and self.chemical_system:
            outside = set(self.composition) - set(self.chemical_system)
            if outside:
                raise ValueError(f"composition elements {sorted(outside)} are outside chemical_system {list(self.chemical_system)}")
        return self


class Provenance(BaseModel):
    """Where a candidate came from: which component, which weights, which config and seed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    component: str
    version: str = ""
    checkpoint_hash: str | None = None
    config_hash: str | None = None
    seed: int | None = None
    campaign: str | None = None
    iteration: int | None = Field(None, ge=0)
    source: str | None = Field(None, description="file and row for imported structures")
    arm: str | None = Field(None, description="the composite generator's arm that made it (generator.composite)")


class Verdict(BaseModel):
    """A guard's decision on one candidate, with the reason stored beside it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    guard: str
    ok: bool
    reason: str = ""
    score: float | None = None


MeasurementStatus = Literal["ok", "failed", "unconverged"]
"""``ok``: a usable value; ``failed``: no value, ``reason`` says why; ``unconverged``: a
relaxation that stopped at its step cap, its (finite) value kept for inspection only."""


class Measurement(BaseModel):
    """One value from an oracle (or a dataset's DFT label) for one structure.

    A failed calculation is a Measurement with ``status="failed"`` and a reason; only
    infrastructure faults raise. ``status="unconverged"`` marks a relaxation that stopped at its
    step cap: its value (finite, or ``None``) is kept for inspection but never counts as an
    energy for a hull, a hit or a stability verdict; only ``ok`` values do.

    Attributes:
        oracle: name of the oracle (or dataset) that measured.
        property: property name (``"energy_per_atom"``, ``"e_above_hull"``, …).
        value: the value in ``units``; finite when ``status`` is ``ok``.
        units: unit string (``"eV/atom"``).
        status: see :data:`MeasurementStatus`.
        reason: why a measurement failed or did not converge (empty when ``ok``).
        details: JSON-able extra facts about how the value came about. For ``e_above_hull`` it
            holds the hull's basis, e.g. ``{"basis": {"elements": 4, "prototype": 31, "known": 0,
            "campaign": 2}, "coverage": "prototype", "decomposition": [{"formula": "CaO",
            "fraction": 0.5, "source": "prototype:rocksalt"}], "hull_energy_per_atom": -5.1}``
            (counts of reference phases by kind, the coverage class, the competing phases with
            their atom fractions, and the hull energy in eV/atom at this composition).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    oracle: str
    property: str
    value: float | None
    units: str = ""
    status: MeasurementStatus = "ok"
    reason: str = ""
    details: dict[str, Any] = Field(default_factory=dict)

    @property
    def usable(self) -> bool:
        """Whether the value counts (``status == "ok"``): for hulls, hits and stability verdicts."""
        return self.status == "ok"

    @model_validator(mode="after")
    def _value_matches_status(self) -> Measurement:
        name = f"{self.oracle}/{self.property}"
        if self.status == "ok" and (self.value is None or not math.isfinite(self.value)):
            raise ValueError(f"measurement {name} with status 'ok' needs a finite value, got {self.value}")
        if self.status == "unconverged" and self.value is not None and not math.isfinite(self.value):
            raise ValueError(f"measurement {name} with status 'unconverged' needs a finite value or None, got {self.value}")
        try:
            json.dumps(self.details, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"details of measurement {name} must be JSON-able (no NaN/inf), got {self.details!r}: {exc}") from None
        return self


@dataclass(frozen=True)
class Prediction:
    """Surrogate output for n structures and m properties.

    Attributes:
        mean: (n, m) predicted values.
        std: (n, m) predictive standard deviations (same units as ``mean``).
        properties: m property names.
        units: m unit strings (``"eV/atom"``, ``"eV"``).
        model: name of the model that predicted.
    """

    mean: np.ndarray
    std: np.ndarray
    properties: tuple[str, ...]
    units: tuple[str, ...]
    model: str = ""

    def __post_init__(self) -> None:
        mean = np.atleast_2d(np.asarray(self.mean, dtype=np.float64))
        std = np.atleast_2d(np.asarray(self.std, dtype=np.float64))
        if mean.shape != std.shape:
            raise ValueError(f"mean {mean.shape} and std {std.shape} must have the same shape (n, m)")
        if mean.shape[1] != len(self.properties) or len(self.units) != len(self.properties):
            raise ValueError(
                f"{mean.shape[1]} columns need as many property names and units, "
                f"got {len(self.properties)} names and {len(self.units)} units"
            )
        if np.any(std < 0):
            raise ValueError("std must be non-negative")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "properties", tuple(self.properties))
        object.__setattr__(self, "units", tuple(self.units))

    def __len__(self) -> int:
        return int(self.mean.shape[0])

    def row(self, i: int) -> dict[str, tuple[float, float, str]]:
        """Property → (mean, std, units) for structure ``i``."""
        return {
            p: (float(self.mean[i, j]), float(self.std[i, j]), self.units[j]) for j, p in enumerate(self.properties)
        }


@dataclass(frozen=True)
class Candidate:
    """A crystal plus everything the loop learned about it.

    ``id`` is the crystal's canonical hash, so the same crystal is one candidate wherever it
    came from. Predictions map property → (mean, std, units).
    """

    crystal: Crystal
    provenance: Provenance
    condition: Condition | None = None
    status: CandidateStatus = CandidateStatus.GENERATED
    verdicts: tuple[Verdict, ...] = ()
    predictions: Mapping[str, tuple[float, float, str]] = field(default_factory=dict)
    measurements: tuple[Measurement, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", CandidateStatus(self.status))

    @property
    def id(self) -> str:
        return self.crystal.canonical_hash()

    @classmethod
    def from_crystals(
        cls, crystals: Sequence[Crystal], provenance: Provenance, condition: Condition | None = None
    ) -> list[Candidate]:
        """Wrap freshly generated crystals, all with the same provenance and condition."""
        return [cls(crystal=c, provenance=provenance, condition=condition) for c in crystals]
