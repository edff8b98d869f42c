"""What a campaign's candidates may contain: allowed elements, chemical systems and sites per cell.

:class:`Constraints` is the ``constraints`` section of a campaign config; the constraint guard
(:class:`~crystaloop.loop.guards.validity.ConstraintGuard`) and the generators' conditions read it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from crystaloop.data.crystal import atomic_number

__all__ = ["Constraints", "split_system"]


def split_system(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Element symbols of a chemical system (``"Sr-Ti-O"``, ``"Sr,Ti,O"`` or a list), unique and
    in atomic-number order; raises ``ValueError`` for an empty system or an unknown element."""
    parts = value.replace(",", "-").split("-") if isinstance(value, str) else list(value)
    symbols = tuple(sorted({p.strip() for p in parts if p.strip()}, key=atomic_number))
    if not symbols:
        raise ValueError(f"a chemical system needs at least one element, got {value!r}")
    return symbols


class Constraints(BaseModel):
    """What generated candidates may contain.

    Attributes:
        elements: allowed elements; a candidate with any other element is rejected.
        chemical_systems: allowed chemical systems (``"Sr-Ti-O"`` or lists); a candidate's
            elements must lie inside one of them. Generation conditions cycle through them.
        max_atoms, min_atoms: sites per cell.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    elements: tuple[str, ...] | None = None
    chemical_systems: tuple[tuple[str, ...], ...] | None = None
    max_atoms: int = Field(20, gt=0)
    min_atoms: int = Field(1, gt=0)

    @field_validator("elements", mode="before")
    @classmethod
    def _elements(cls, value: Any) -> Any:
        return None if value is None else split_system(value)

    @field_validator("chemical_systems", mode="before")
    @classmethod
    def _systems(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            value = [value]
        return tuple(split_system(v) for v in value)

    @model_validator(mode="after")
    def _sizes(self) -> Constraints:
        if self.min_atoms > self.max_atoms:
            raise ValueError(f"min_atoms {self.min_atoms} exceeds max_atoms {self.max_atoms}")
        return self

    def allows(self, elements: list[str] | tuple[str, ...]) -> bool:
        """Whether a candidate with these elements is inside the constraints."""
        present = set(elements)
        if self.elements is not None and not present <= set(self.elements):
            return False
        if self.chemical_systems is not None and not any(present <= set(s) for s in self.chemical_systems):
            return False
        return True
