"""Measurement details and the ``unconverged`` status.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

Adds ``measurements.details_json`` (nullable text: the measurement's ``details`` dict as JSON,
e.g. the hull basis of an ``e_above_hull`` value), widens ``measurements.status`` from 8 to 16
characters and lets its CHECK constraint accept ``'unconverged'`` (a relaxation stopped at its
step cap). Existing rows keep their values; their ``details_json`` stays NULL, read as ``{}``.
SQLite cannot alter a constraint in place, so the table is rebuilt through
``op.batch_alter_table`` (rows copied, indexes recreated).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_CHECK = "status IN ('ok', 'failed')"
_NEW_CHECK = "status IN ('ok', 'failed', 'unconverged')"


def upgrade() -> None:
    """Add ``details_json``, widen ``status`` and allow ``'unconverged'``."""
    with op.batch_alter_table("measurements") as batch:
        batch.drop_constraint(op.f("ck_measurements_status"), type_="check")
        batch.alter_column("status", existing_type=sa.String(length=8), type_=sa.String(length=16), existing_nullable=False)
        batch.add_column(sa.Column("details_json", sa.Text(), nullable=True))
        batch.create_check_constraint(op.f("ck_measurements_status"), _NEW_CHECK)


def downgrade() -> None:
    """Drop ``details_json`` and restore the two-status check; unconverged rows become ``failed``."""
    op.execute(
        "UPDATE measurements SET status = 'failed', value = NULL, "
        "reason = 'unconverged (downgraded from revision 0004): ' || reason WHERE status = 'unconverged'"
    )
    with op.batch_alter_table("measurements") as batch:
        batch.drop_constraint(op.f("ck_measurements_status"), type_="check")
        batch.drop_column("details_json")
        batch.alter_column("status", existing_type=sa.String(length=16), type_=sa.String(length=8), existing_nullable=False)
        batch.create_check_constraint(op.f("ck_measurements_status"), _OLD_CHECK)
