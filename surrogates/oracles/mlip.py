"""`MLIPOracle`: an ASE oracle measuring what a campaign asks of it, behind the batch oracle port.

From one relaxation per crystal it reports, in this order, the properties it was asked for:

* ``energy_per_atom`` — the relaxed energy, eV/atom;
* ``e_above_hull`` — the distance to the convex hull of the elements, the prototype competing
  phases and every phase the campaign relaxed (:class:`~crystaloop.surrogates.hull.EnergyAboveHull`),
  eV/atom; an unconverged relaxation gives an ``unconverged`` value, never a verdict;
* ``bulk_modulus`` — from an equation-of-state fit around the input structure, GPa.

:class:`MLIPOracleChoice` is its campaign config (``oracle: {kind: chgnet, measure: [...]}``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from crystaloop.data.crystal import Crystal
from crystaloop.data.errors import UnknownComponentError
from crystaloop.data.records import Measurement
from crystaloop.surrogates.oracles.base import ASEOracle
from crystaloop.surrogates.phases import PhaseConfig

__all__ = ["MLIP_PROPERTIES", "MLIPOracle", "MLIPOracleChoice"]

MLIP_PROPERTIES = ("energy_per_atom", "e_above_hull", "bulk_modulus")
"""Properties an MLIP oracle measures (relaxed energy, hull distance, EOS bulk modulus)."""


class MLIPOracleChoice(BaseModel):
    """A campaign's MLIP oracle.

    Attributes:
        kind: a name in :data:`~crystaloop.surrogates.oracles.registry.ORACLES` (``chgnet``,
            ``sevennet``, ``emt``, or one you registered).
        measure: properties to measure, from :data:`MLIP_PROPERTIES`.
        fmax, max_steps: relaxation settings (eV/Å, optimizer steps).
        cache_url: SQLAlchemy URL of the result cache (``None`` → its default file).
        missing_reference: for elements without any reference structure (Pm, At, Fr, Ra, Pa
            and the actinides from Pu on; see :mod:`crystaloop.surrogates.hull`): ``fail`` their
            candidates' e_above_hull (default), or ``trial_lattices`` — the lowest relaxed trial
            structure stands in, an upper bound on the element's energy, so e_above_hull is
            then a lower bound (optimistic) for those compounds.
        competing_phases: how the hull's prototype competing phases are built (once per binary
            or ternary subsystem and oracle setting, cached); ``enabled: false`` leaves a hull
            of the elements and the campaign's own relaxations.
        require_same_structure: a candidate whose relaxation turned it into another structure
            (no StructureMatcher match with its input) gets a failed e_above_hull, not a verdict.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = "chgnet"
    measure: tuple[str, ...] = ("energy_per_atom", "e_above_hull")
    fmax: float = Field(0.1, gt=0)
    max_steps: int = Field(200, ge=0)
    cache_url: str | None = None
    missing_reference: Literal["fail", "trial_lattices"] = "fail"
    competing_phases: PhaseConfig = Field(default_factory=PhaseConfig)
    require_same_structure: bool = True

    @field_validator("kind")
    @classmethod
    def _registered(cls, value: str) -> str:
        from crystaloop.surrogates.oracles.registry import registered_kind

        return registered_kind(value)

    @field_validator("measure")
    @classmethod
    def _measurable(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        unknown = [p for p in value if p not in MLIP_PROPERTIES]
        if unknown:
            kind = info.data.get("kind", "MLIP")
            raise ValueError(f"oracle.measure names {unknown[0]!r}, which the {kind} oracle cannot measure; allowed: {', '.join(MLIP_PROPERTIES)}")
        return value

    def build(self) -> MLIPOracle:
        """The oracle this choice describes (no weights load until the first calculation)."""
        from crystaloop.surrogates.oracles.base import RelaxConfig
        from crystaloop.surrogates.oracles.registry import OracleConfig, oracle_from_config

        config = OracleConfig(kind=self.kind, relax=RelaxConfig(fmax=self.fmax, max_steps=self.max_steps), cache_url=self.cache_url)
        return MLIPOracle(
            oracle_from_config(config), self.measure, missing_reference=self.missing_reference,
            phases=self.competing_phases, require_same_structure=self.require_same_structure,
        )


class MLIPOracle:
    """An :class:`ASEOracle` measuring ``properties`` (see the module docstring).

    Args:
        oracle: the ASE oracle that relaxes (CHGNet, SevenNet, EMT, a DFT code).
        properties: what to measure, from :data:`MLIP_PROPERTIES` (reported in that order).
        missing_reference, phases, require_same_structure: the hull's settings
            (:class:`MLIPOracleChoice`).

    ``evaluate(crystals)`` gives, crystal by crystal, one Measurement per property.
    """

    def __init__(
        self, oracle: ASEOracle, properties: Sequence[str], missing_reference: Literal["fail", "trial_lattices"] = "fail",
        phases: PhaseConfig | None = None, require_same_structure: bool = True,
    ) -> None:
        unknown = [p for p in properties if p not in MLIP_PROPERTIES]
        if unknown:
            raise UnknownComponentError("MLIP property", unknown[0], MLIP_PROPERTIES)
        from crystaloop.surrogates.hull import EnergyAboveHull

        self.oracle = oracle
        self.name = oracle.name
        self.properties = tuple(p for p in MLIP_PROPERTIES if p in properties)
        self.hull = EnergyAboveHull(oracle, missing_reference=missing_reference, phases=phases, require_same_structure=require_same_structure)

    def evaluate(self, crystals: Sequence[Crystal]) -> list[Measurement]:
        out: list[Measurement] = []
        for crystal, relaxed in zip(crystals, self.oracle.relax(list(crystals)), strict=True):
            if "energy_per_atom" in self.properties:
                out.append(relaxed.to_measurement(self.name))
            if "e_above_hull" in self.properties:
                if relaxed.status == "unconverged":  # its value stays, marked, for inspection
                    out += [_unconverged(m, relaxed.reason) for m in self.hull.e_above_hull([crystal], [relaxed.energy_per_atom])]
                else:  # with the relaxation, so a structure that fell apart is no stability verdict
                    out += self.hull.e_above_hull([crystal], relaxations=[relaxed])
            if "bulk_modulus" in self.properties:
                from crystaloop.surrogates.eos import bulk_modulus

                out.append(bulk_modulus(crystal, self.oracle))
        return out


def _unconverged(measurement: Measurement, why: str) -> Measurement:
    """``measurement`` (from an unconverged relaxation's energy) marked ``unconverged``: its
    value stays for inspection and never counts as a hull distance, a hit or a stable verdict."""
    if measurement.status != "ok":
        return measurement
    reason = f"from an unconverged relaxation ({why})"
    return Measurement.model_validate({**measurement.model_dump(), "status": "unconverged", "reason": reason})
