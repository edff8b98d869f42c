"""The element list as an indexed array, on PostgreSQL: ``elements HAS ALL`` from one GIN index.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

Adds ``candidates.element_array``, ``text[]``, ``GENERATED ALWAYS AS (string_to_array(elements,
',')) STORED``, and the GIN index ``ix_candidates_element_array`` on it, on PostgreSQL only. The
database computes the column: adding it fills it for every existing row (PostgreSQL rewrites the
table, under an exclusive lock: about 8 s per 10⁵ candidates on a 2-core machine), and every
later insert keeps it in sync, whatever writes the row (the store, ``COPY``, plain SQL); it
cannot be written by hand. SQLite has no array type or GIN: there this revision changes nothing
and element filters keep using ``candidate_elements``. The column and index are not in the
models (:data:`crystaloop.data.store.schema.POSTGRES_ONLY`).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMN = "element_array"  # = schema.ELEMENT_ARRAY_COLUMN (a migration keeps its own copy of names)
_INDEX = "ix_candidates_element_array"


def upgrade() -> None:
    """Add the generated array column and its GIN index (PostgreSQL); nothing on SQLite."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE candidates ADD COLUMN {_COLUMN} text[] GENERATED ALWAYS AS (string_to_array(elements, ',')) STORED")
    op.execute(f"CREATE INDEX {_INDEX} ON candidates USING gin ({_COLUMN})")


def downgrade() -> None:
    """Drop the index and the column (PostgreSQL); nothing on SQLite."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP INDEX {_INDEX}")
    op.execute(f"ALTER TABLE candidates DROP COLUMN {_COLUMN}")
