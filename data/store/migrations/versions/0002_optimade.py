"""OPTIMADE columns and indexes: OPTIMADE formulas, per-element counts and ratios, filter indexes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

Adds ``candidates.chemical_formula_reduced`` (OPTIMADE: alphabetical, ``"O3SrTi"``) and
``candidates.chemical_formula_descriptive`` (the cell formula, ``"Na4Cl4"``),
``candidate_elements.count`` and ``.ratio`` (OPTIMADE ``elements_ratios``), and indexes for the
API's typical filters. Existing rows are backfilled from their stored atomic numbers (batches of
``_BATCH`` candidates; skipped in offline ``--sql`` mode, which cannot read data).

Frozen snapshot: the formula rules are written out here rather than imported from the code.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from math import gcd

import sqlalchemy as sa
from alembic import context, op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

logger = logging.getLogger(__name__)

_BATCH = 2000
_INDEXES: tuple[tuple[str, str, list[str]], ...] = (
    ("ix_candidates_chemical_formula_reduced_id", "candidates", ["chemical_formula_reduced", "id"]),
    ("ix_candidates_chemical_formula_anonymous", "candidates", ["chemical_formula_anonymous"]),
    ("ix_candidates_updated_at", "candidates", ["updated_at"]),
    ("ix_candidates_campaign_id_iteration_id", "candidates", ["campaign_id", "iteration", "id"]),
    ("ix_candidates_nelements_nsites", "candidates", ["nelements", "nsites"]),
    ("ix_candidates_elements", "candidates", ["elements"]),
    ("ix_measurements_property_status_value", "measurements", ["property", "status", "value", "candidate_id"]),
    ("ix_predictions_property_mean", "predictions", ["property", "mean", "candidate_id"]),
)


def _formulas(counts: dict[str, int]) -> tuple[str, str]:
    """(OPTIMADE reduced formula, descriptive formula in pymatgen's element order)."""
    from pymatgen.core import Composition

    divisor = 0
    for n in counts.values():
        divisor = gcd(divisor, n)
    divisor = max(divisor, 1)
    reduced = "".join(s + (str(counts[s] // divisor) if counts[s] != divisor else "") for s in sorted(counts))
    order = [token.rstrip("0123456789.") for token in Composition(counts).formula.split()]
    descriptive = "".join(s + (str(counts[s]) if counts[s] != 1 else "") for s in order)
    return reduced, descriptive


def _backfill(conn: sa.Connection) -> None:
    """Fill the new columns of every stored candidate, ``_BATCH`` candidates per round trip."""
    from ase.data import chemical_symbols

    candidates = sa.table(
        "candidates",
        sa.column("id", sa.String),
        sa.column("numbers", sa.Text),
        sa.column("chemical_formula_reduced", sa.Text),
        sa.column("chemical_formula_descriptive", sa.Text),
    )
    elements = sa.table(
        "candidate_elements",
        sa.column("candidate_id", sa.String),
        sa.column("element", sa.String),
        sa.column("count", sa.Integer),
        sa.column("ratio", sa.Float),
    )
    set_formulas = (
        sa.update(candidates)
        .where(candidates.c.id == sa.bindparam("b_id"))
        .values(
            chemical_formula_reduced=sa.bindparam("b_reduced"),
            chemical_formula_descriptive=sa.bindparam("b_descriptive"),
        )
    )
    set_counts = (
        sa.update(elements)
        .where(sa.and_(elements.c.candidate_id == sa.bindparam("b_id"), elements.c.element == sa.bindparam("b_element")))
        .values(count=sa.bindparam("b_count"), ratio=sa.bindparam("b_ratio"))
    )
    last = ""
    done = 0
    while True:
        batch = conn.execute(
            sa.select(candidates.c.id, candidates.c.numbers)
            .where(candidates.c.id > last)
            .order_by(candidates.c.id)
            .limit(_BATCH)
        ).all()
        if not batch:
            break
        formula_rows, count_rows = [], []
        for cid, numbers in batch:
            counts = {chemical_symbols[z]: n for z, n in Counter(json.loads(numbers)).items()}
            reduced, descriptive = _formulas(counts)
            formula_rows.append({"b_id": cid, "b_reduced": reduced, "b_descriptive": descriptive})
            total = sum(counts.values())
            count_rows += [
                {"b_id": cid, "b_element": s, "b_count": n, "b_ratio": n / total} for s, n in counts.items()
            ]
        conn.execute(set_formulas, formula_rows)
        conn.execute(set_counts, count_rows)
        done += len(batch)
        last = batch[-1][0]
    if done:
        logger.info("revision 0002: backfilled OPTIMADE formulas of %d candidates", done)


def upgrade() -> None:
    """Add the OPTIMADE columns, backfill them, and create the filter indexes."""
    op.add_column("candidates", sa.Column("chemical_formula_reduced", sa.Text(), nullable=True))
    op.add_column("candidates", sa.Column("chemical_formula_descriptive", sa.Text(), nullable=True))
    op.add_column("candidate_elements", sa.Column("count", sa.Integer(), nullable=True))
    op.add_column("candidate_elements", sa.Column("ratio", sa.Float(), nullable=True))
    if context.is_offline_mode():
        logger.warning("revision 0002 in offline mode: existing candidates are not backfilled")
    else:
        _backfill(op.get_bind())
    for name, table, columns in _INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    """Drop the filter indexes and the OPTIMADE columns (their values are lost)."""
    for name, table, _ in reversed(_INDEXES):
        op.drop_index(name, table_name=table)
    op.drop_column("candidate_elements", "ratio")
    op.drop_column("candidate_elements", "count")
    op.drop_column("candidates", "chemical_formula_descriptive")
    op.drop_column("candidates", "chemical_formula_reduced")
