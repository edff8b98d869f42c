"""`CandidateFilter`: what to select from the store, compiled to SQLAlchemy expressions.

Values never reach SQL as text: every condition is a bound-parameter expression, so a filter is
safe whatever strings it holds.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import ColumnElement, Select, and_, exists, select

from crystaloop.data.crystal import atomic_number
from crystaloop.data.errors import QueryError
from crystaloop.data.records import CandidateStatus
from crystaloop.data.store.schema import CandidateElementRow, CandidateRow

__all__ = ["CandidateFilter", "ORDER_BY", "MAX_LIMIT", "as_filter", "filter_conditions", "apply_order"]

MAX_LIMIT = 100_000
ORDER_BY = ("created_at", "id", "nsites", "reduced_formula")

_SPLIT = re.compile(r"[\s,\-]+")


class CandidateFilter(BaseModel):
    """Which candidates to return; all given criteria must hold (AND).

    Attributes:
        status: any of these statuses.
        elements: the candidate contains every one of these elements (OPTIMADE ``HAS ALL``).
            A string is split on commas, dashes and spaces (``"Sr-Ti-O"``).
        elements_only: read ``elements`` as a chemical system instead: candidates with no element
            outside it (OPTIMADE ``HAS ONLY``; subsystems included, so ``Sr-Ti-O`` also gives SrO,
            TiO2 and Ti). Add ``nelements=len(elements)`` for exactly these elements.
        campaign: provenance campaign id.
        iteration: provenance iteration (0-based).
        min_nsites, max_nsites: inclusive range of sites per cell.
        nelements: number of distinct elements.
        reduced_formula: reduced formula, normalised (``"TiSrO3"`` matches ``"SrTiO3"``).
        limit: most rows returned (1..100000); :meth:`CandidateStore.count` ignores it.
        offset: rows skipped first (for paging).
        order_by: sort key (ties broken by id, so paging is stable).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: list[CandidateStatus] | None = None
    elements: list[str] | None = None
    elements_only: bool = False
    campaign: str | None = None
    iteration: int | None = Field(None, ge=0)
    min_nsites: int | None = Field(None, ge=1)
    max_nsites: int | None = Field(None, ge=1)
    nelements: int | None = Field(None, ge=1, le=118)
    reduced_formula: str | None = None
    limit: int = Field(100, ge=1, le=MAX_LIMIT)
    offset: int = Field(0, ge=0)
    order_by: Literal["created_at", "id", "nsites", "reduced_formula"] = "created_at"

    @field_validator("status", mode="before")
    @classmethod
    def _status_list(cls, value: Any) -> Any:
        if isinstance(value, str | CandidateStatus):
            return [value]
        if value is not None and len(value) == 0:
            allowed = ", ".join(s.value for s in CandidateStatus)
            raise ValueError(f"status must name at least one status; allowed: {allowed}")
        return value

    @field_validator("elements", mode="before")
    @classmethod
    def _split_elements(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [s for s in _SPLIT.split(value) if s]
        return value

    @field_validator("elements")
    @classmethod
    def _check_elements(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("elements must name at least one element symbol (e.g. ['Sr', 'O'])")
        for symbol in value:
            atomic_number(symbol)  # raises, naming the bad symbol and the allowed ones
        return sorted(set(value))

    @field_validator("reduced_formula")
    @classmethod
    def _normalise_formula(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from pymatgen.core import Composition

        try:
            composition = Composition(value)
            for element in composition.elements:
                atomic_number(str(element))
        except Exception as exc:
            raise ValueError(f"reduced_formula {value!r} is not a chemical formula (e.g. 'SrTiO3'): {exc}") from None
        return composition.reduced_formula

    @model_validator(mode="after")
    def _consistent(self) -> CandidateFilter:
        if self.elements_only and not self.elements:
            raise ValueError("elements_only=True needs elements (the chemical system), e.g. ['Sr', 'Ti', 'O']")
        if self.min_nsites is not None and self.max_nsites is not None and self.min_nsites > self.max_nsites:
            raise ValueError(f"min_nsites {self.min_nsites} is larger than max_nsites {self.max_nsites}")
        return self


def as_filter(value: CandidateFilter | dict[str, Any] | None) -> CandidateFilter:
    """``value`` as a :class:`CandidateFilter` (``None``: the default filter; a dict is validated).

    Raises:
        QueryError: ``value`` is neither a filter, a dict nor ``None``.
        pydantic.ValidationError: a dict with bad fields or values.
    """
    if value is None:
        return CandidateFilter()
    if isinstance(value, CandidateFilter):
        return value
    if isinstance(value, dict):
        return CandidateFilter.model_validate(value)
    raise QueryError(f"filter must be a CandidateFilter, a dict of its fields or None, got {type(value).__name__}")


def filter_conditions(flt: CandidateFilter) -> list[ColumnElement[bool]]:
    """The WHERE conditions of ``flt`` on :class:`CandidateRow` (empty list: everything)."""
    c = CandidateRow
    conditions: list[ColumnElement[bool]] = []
    if flt.status is not None:
        values = [s.value for s in flt.status]
        conditions.append(c.status == values[0] if len(values) == 1 else c.status.in_(values))
    if flt.elements:
        e = CandidateElementRow
        if flt.elements_only:
            conditions.append(~exists().where(and_(e.candidate_id == c.id, e.element.not_in(flt.elements))))
        else:
            for symbol in flt.elements:
                conditions.append(exists().where(and_(e.candidate_id == c.id, e.element == symbol)))
    if flt.campaign is not None:
        conditions.append(c.campaign_id == flt.campaign)
    if flt.iteration is not None:
        conditions.append(c.iteration == flt.iteration)
    if flt.min_nsites is not None:
        conditions.append(c.nsites >= flt.min_nsites)
    if flt.max_nsites is not None:
        conditions.append(c.nsites <= flt.max_nsites)
    if flt.nelements is not None:
        conditions.append(c.nelements == flt.nelements)
    if flt.reduced_formula is not None:
        conditions.append(c.reduced_formula == flt.reduced_formula)
    return conditions


def apply_order(statement: Select[Any], flt: CandidateFilter) -> Select[Any]:
    """``statement`` ordered by ``flt.order_by`` (then id) with its limit and offset."""
    key = getattr(CandidateRow, flt.order_by)
    order = (key,) if flt.order_by == "id" else (key, CandidateRow.id)
    return statement.order_by(*order).limit(flt.limit).offset(flt.offset)


def select_candidates(flt: CandidateFilter) -> Select[Any]:
    """SELECT of full candidate rows matching ``flt``, ordered and paged."""
    return apply_order(select(CandidateRow).where(*filter_conditions(flt)), flt)
