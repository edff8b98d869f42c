"""The candidate store's tables as SQLAlchemy 2 declarative models.

The alembic migrations in :mod:`crystaloop.data.store.migrations` must create exactly this schema
(a test compares them with ``alembic.autogenerate.compare_metadata``): change both together, in a
new migration.

Conventions: every timestamp is UTC (:class:`UTCDateTime`, returned timezone-aware on both
backends); crystal arrays and pydantic records are stored as JSON text; constraint and index
names come from :data:`NAMING_CONVENTION` so they are the same on SQLite and PostgreSQL.

``predictions``, ``measurements`` and ``verdicts`` have no separate index on ``candidate_id``:
their unique constraints lead with it, and that index serves lookups by candidate.

Revision 0002 added what the OPTIMADE API (:mod:`crystaloop.data.optimade`) filters on: the
OPTIMADE reduced and descriptive formulas, per-element counts and ratios, and indexes for its
typical filters (formulas, the element list for chemical-system searches, ``last_modified`` =
``updated_at``, campaign + iteration, nelements + nsites, measured and predicted property values).
Several end with ``id`` so that an equality filter's first page comes out of the index already in
the API's default order.

Revision 0003 added ``candidate_embeddings``: one vector per (candidate, embedding model), for
multimodal retrieval (:mod:`crystaloop.data.store.embeddings`).

Revision 0004 added the measurement status ``unconverged`` (a relaxation stopped at its step
cap; ``status`` widened to 16 characters) and ``measurements.details_json``, the measurement's
:attr:`~crystaloop.data.records.Measurement.details` as JSON (NULL for rows written before it,
read back as ``{}``).

Revision 0005 added, on PostgreSQL only, ``candidates.element_array``: the element list as
``text[]``, a column the database computes itself (``GENERATED ALWAYS AS (string_to_array(elements,
',')) STORED``, so existing rows were filled when it was added and every write keeps it in sync),
with a GIN index, so that ``elements HAS ALL`` (``@>``), ``HAS ANY`` (``&&``) and ``HAS ONLY``
(``<@``) are answered from one index instead of one ``candidate_elements`` probe per value. It is
not part of these models (SQLite has no array type and keeps answering element filters from
``candidate_elements``): :data:`POSTGRES_ONLY` names it, :func:`include_object` keeps alembic's
comparisons off it, and :func:`element_array` is its SQL expression.

Revision 0006 added ``candidate_element_sets`` (:class:`ElementSetRow`): one row per distinct
element list (``candidates.elements``) in the store with the number of candidates that have it,
kept exact by triggers on ``candidates`` (every insert, delete and change of ``elements``,
whatever writes it), so that the exact count of a filter made of element predicates alone is a
sum over a few thousand rows instead of a visit of every match
(:mod:`crystaloop.data.optimade.element_sets`). The triggers are not part of these models;
:data:`ELEMENT_SET_TRIGGERS` names them.

Revision 0007 replaced the index on ``candidates.elements`` with one on ``(elements, id)``: the
first page of an element-only filter is then the first ids of each matching element list, read
from the index, instead of a visit and sort of every match.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    column,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from crystaloop.data.records import CandidateStatus

__all__ = [
    "NAMING_CONVENTION",
    "STATUS_VALUES",
    "MEASUREMENT_STATUS_VALUES",
    "UTCDateTime",
    "utcnow",
    "Base",
    "CampaignRow",
    "IterationRow",
    "CandidateRow",
    "CandidateElementRow",
    "ElementSetRow",
    "ELEMENT_SET_TRIGGERS",
    "ELEMENT_ARRAY_COLUMN",
    "ELEMENT_ARRAY_INDEX",
    "POSTGRES_ONLY",
    "element_array",
    "include_object",
    "PredictionRow",
    "MeasurementRow",
    "VerdictRow",
    "StatusHistoryRow",
    "EmbeddingRow",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
STATUS_VALUES: tuple[str, ...] = tuple(s.value for s in CandidateStatus)
MEASUREMENT_STATUS_VALUES: tuple[str, ...] = ("ok", "failed", "unconverged")


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (UTC).

    PostgreSQL keeps it as ``timestamp with time zone``; SQLite has no time zones, so the UTC
    wall-clock time is stored and UTC is attached on the way out. Naive datetimes are refused.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"timestamps must be timezone-aware, got naive {value.isoformat()}")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def _status_check(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)  # constants from the code, never user input
    return f"{column} IN ({quoted})"


class Base(DeclarativeBase):
    """Declarative base of the store's tables (one :class:`~sqlalchemy.MetaData`)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class CampaignRow(Base):
    """One campaign: its id, a display name, the config it ran with and that config's hash."""

    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    config_json: Mapped[str] = mapped_column(Text, nullable=False)
    config_hash: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class IterationRow(Base):
    """One iteration of a campaign (0-based ``index``); ``report_json`` is set when it finishes."""

    __tablename__ = "iterations"
    __table_args__ = (UniqueConstraint("campaign_id", "index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(Text, ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False)
    index: Mapped[int] = mapped_column(Integer, nullable=False)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    report_json: Mapped[str | None] = mapped_column(Text, nullable=True)


class CandidateRow(Base):
    """A candidate: the crystal (JSON arrays), searchable derived columns and its records.

    Derived columns (formula, elements, counts, space group, volume in Å³, density in g/cm³) are
    computed once at insert; the crystal itself is ``lattice``, ``frac_coords`` and ``numbers``
    as JSON lists, exactly :meth:`Crystal.to_dict`. ``reduced_formula`` is pymatgen's
    (``"SrTiO3"``), ``chemical_formula_reduced`` the OPTIMADE one (alphabetical, ``"O3SrTi"``);
    ``updated_at`` is OPTIMADE's ``last_modified``.
    """

    __tablename__ = "candidates"
    __table_args__ = (
        CheckConstraint(_status_check("status", STATUS_VALUES), name="status"),
        # Serves status counts and "status = x ORDER BY created_at, id LIMIT n" without a sort.
        Index("ix_candidates_status_created_at_id", "status", "created_at", "id"),
        # OPTIMADE: _crystaloop_campaign = x AND _crystaloop_iteration = k (index-only with the id).
        Index("ix_candidates_campaign_id_iteration_id", "campaign_id", "iteration", "id"),
        # OPTIMADE: nelements <op> a AND nsites <op> b, counted from the index alone.
        Index("ix_candidates_nelements_nsites", "nelements", "nsites"),
        # OPTIMADE: chemical_formula_reduced = x, its first page already in id order.
        Index("ix_candidates_chemical_formula_reduced_id", "chemical_formula_reduced", "id"),
        # Chemical-system lookups (elements IN (...)); the first page of one element list in id
        # order, from the index alone (element-only filters, revision 0007).
        Index("ix_candidates_elements_id", "elements", "id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    lattice: Mapped[str] = mapped_column(Text, nullable=False)
    frac_coords: Mapped[str] = mapped_column(Text, nullable=False)
    numbers: Mapped[str] = mapped_column(Text, nullable=False)
    reduced_formula: Mapped[str] = mapped_column(Text, nullable=False, index=True)
    chemical_formula_anonymous: Mapped[str | None] = mapped_column(Text, nullable=True, index=True)
    chemical_formula_reduced: Mapped[str | None] = mapped_column(Text, nullable=True)
    chemical_formula_descriptive: Mapped[str | None] = mapped_column(Text, nullable=True)
    elements: Mapped[str] = mapped_column(Text, nullable=False)  # "O,Sr,Ti": indexed with id, see __table_args__
    nelements: Mapped[int] = mapped_column(Integer, nullable=False, index=True)
    nsites: Mapped[int] = mapped_column(Integer, nullable=False, index=True)
    spacegroup_number: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    volume: Mapped[float] = mapped_column(Float, nullable=False)
    density: Mapped[float] = mapped_column(Float, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    campaign_id: Mapped[str | None] = mapped_column(Text, ForeignKey("campaigns.id"), nullable=True, index=True)
    iteration: Mapped[int | None] = mapped_column(Integer, nullable=True)
    provenance_json: Mapped[str] = mapped_column(Text, nullable=False)
    condition_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, index=True)


ELEMENT_ARRAY_COLUMN = "element_array"
"""PostgreSQL only (revision 0005): ``candidates.elements`` as ``text[]``, generated by the database."""
ELEMENT_ARRAY_INDEX = "ix_candidates_element_array"
"""PostgreSQL only (revision 0005): the GIN index of :data:`ELEMENT_ARRAY_COLUMN`."""
POSTGRES_ONLY: frozenset[tuple[str, str]] = frozenset({("column", ELEMENT_ARRAY_COLUMN), ("index", ELEMENT_ARRAY_INDEX)})
"""(kind, name) of the schema objects revision 0005 creates on PostgreSQL outside these models."""


def element_array() -> Any:
    """``candidates.element_array`` (PostgreSQL only) as a column of the ``candidates`` table, typed ``text[]``.

    A column clause bound to the table (not in its ``c`` collection): statements that use it
    select from ``candidates`` as they do for any other column.
    """
    return column(ELEMENT_ARRAY_COLUMN, ARRAY(Text), _selectable=CandidateRow.__table__)


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """alembic ``include_object`` hook: leave out the PostgreSQL-only objects of :data:`POSTGRES_ONLY`.

    They are created by migration 0005 and are not in the models, so a comparison of the models
    with a PostgreSQL store would otherwise report them as to be dropped.
    """
    return not (reflected and compare_to is None and (type_, name) in POSTGRES_ONLY)


class CandidateElementRow(Base):
    """One (candidate, element) pair; the index on ``element`` serves ``elements HAS ALL`` queries.

    ``count`` is the number of sites of this element in the cell, ``ratio`` that count over all
    sites (OPTIMADE ``elements_ratios``); both NULL only for rows written before revision 0002
    by code that did not fill them.
    """

    __tablename__ = "candidate_elements"
    __table_args__ = (Index("ix_candidate_elements_element", "element", "candidate_id"),)

    candidate_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("candidates.id", ondelete="CASCADE"), primary_key=True
    )
    element: Mapped[str] = mapped_column(String(3), primary_key=True)
    count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ratio: Mapped[float | None] = mapped_column(Float, nullable=True)


class ElementSetRow(Base):
    """One distinct element list of the stored candidates and how many candidates have it (revision 0006).

    ``elements`` is ``candidates.elements`` (sorted symbols joined by commas, ``"O,Sr,Ti"``),
    ``nelements`` its number of symbols, ``n`` the number of candidates with exactly this list
    (≥ 1; a list no candidate has any more is deleted). Written only by the triggers of
    :data:`ELEMENT_SET_TRIGGERS`, in the transaction that writes the candidates, so in any
    snapshot ``sum(n)`` over the rows whose list satisfies an element predicate equals the
    ``count(*)`` of the candidates that satisfy it.
    """

    __tablename__ = "candidate_element_sets"

    elements: Mapped[str] = mapped_column(Text, primary_key=True)
    nelements: Mapped[int] = mapped_column(Integer, nullable=False)
    n: Mapped[int] = mapped_column(BigInteger, nullable=False)


ELEMENT_SET_TRIGGERS: tuple[str, ...] = (
    "candidate_element_sets_insert",
    "candidate_element_sets_delete",
    "candidate_element_sets_update",
    "candidate_element_sets_truncate",
)
"""Triggers on ``candidates`` that keep :class:`ElementSetRow` exact (revision 0006; no truncate trigger on SQLite)."""


class PredictionRow(Base):
    """A surrogate's prediction of one property (mean and std in ``units``); one per model and property.

    A NaN mean or std is stored as NULL and read back as NaN.
    """

    __tablename__ = "predictions"
    __table_args__ = (
        UniqueConstraint("candidate_id", "model", "property"),
        # OPTIMADE: _crystaloop_predicted_<property> <op> value (range scan, index-only semi-join).
        Index("ix_predictions_property_mean", "property", "mean", "candidate_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    candidate_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("candidates.id", ondelete="CASCADE"), nullable=False
    )
    model: Mapped[str] = mapped_column(Text, nullable=False)
    property: Mapped[str] = mapped_column(Text, nullable=False)
    mean: Mapped[float | None] = mapped_column(Float, nullable=True)
    std: Mapped[float | None] = mapped_column(Float, nullable=True)
    units: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class MeasurementRow(Base):
    """An oracle's value of one property (``value`` NULL for a failed calculation).

    ``details_json`` is the measurement's ``details`` dict as JSON (for ``e_above_hull``: the
    hull's basis and decomposition); NULL or ``{}`` both read back as an empty dict.
    """

    __tablename__ = "measurements"
    __table_args__ = (
        UniqueConstraint("candidate_id", "oracle", "property"),
        CheckConstraint(_status_check("status", MEASUREMENT_STATUS_VALUES), name="status"),
        # OPTIMADE: _crystaloop_e_above_hull < x (property = ... AND status = 'ok' AND value < x).
        Index("ix_measurements_property_status_value", "property", "status", "value", "candidate_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    candidate_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("candidates.id", ondelete="CASCADE"), nullable=False
    )
    oracle: Mapped[str] = mapped_column(Text, nullable=False)
    property: Mapped[str] = mapped_column(Text, nullable=False)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    units: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    details_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class VerdictRow(Base):
    """A guard's verdict on a candidate; one per guard (re-checking overwrites)."""

    __tablename__ = "verdicts"
    __table_args__ = (UniqueConstraint("candidate_id", "guard"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    candidate_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("candidates.id", ondelete="CASCADE"), nullable=False
    )
    guard: Mapped[str] = mapped_column(Text, nullable=False)
    ok: Mapped[bool] = mapped_column(Boolean, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class StatusHistoryRow(Base):
    """One status change of a candidate (``from_status`` NULL for the status it was added with)."""

    __tablename__ = "status_history"
    __table_args__ = (CheckConstraint(_status_check("to_status", STATUS_VALUES), name="to_status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    candidate_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("candidates.id", ondelete="CASCADE"), nullable=False, index=True
    )
    from_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_status: Mapped[str] = mapped_column(String(16), nullable=False)
    note: Mapped[str] = mapped_column(Text, nullable=False)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class EmbeddingRow(Base):
    """A candidate's embedding by one model: ``dim`` float32 values, little-endian bytes in ``vector``.

    Keyed by (candidate, model); re-embedding with the same model overwrites. The index on
    ``model`` serves loading every vector of one model for a brute-force search.
    """

    __tablename__ = "candidate_embeddings"
    __table_args__ = (Index("ix_candidate_embeddings_model_candidate_id", "model", "candidate_id"),)

    candidate_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("candidates.id", ondelete="CASCADE"), primary_key=True
    )
    model: Mapped[str] = mapped_column(Text, primary_key=True)
    dim: Mapped[int] = mapped_column(Integer, nullable=False)
    vector: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
