"""The element list indexed with the id: one element list's first page in id order from the index.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04

Replaces ``ix_candidates_elements`` (``elements``) with ``ix_candidates_elements_id``
(``elements``, ``id``). Lookups by element list (chemical systems, ``elements IN (...)``) use its
prefix as before; an element-only OPTIMADE filter's page (:mod:`crystaloop.data.optimade.search`)
reads the first ids of each matching list (from the element-set summary of revision 0006) in id
order, 20 index entries per list, instead of fetching and sorting every match. Building it
reads every candidate (about 5-10 s per 10⁶ on a 2-core machine). No data changes.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Index (elements, id) instead of elements alone."""
    op.create_index("ix_candidates_elements_id", "candidates", ["elements", "id"], unique=False)
    op.drop_index("ix_candidates_elements", table_name="candidates")


def downgrade() -> None:
    """Back to the index on elements alone."""
    op.create_index("ix_candidates_elements", "candidates", ["elements"], unique=False)
    op.drop_index("ix_candidates_elements_id", table_name="candidates")
