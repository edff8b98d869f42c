"""Candidate embeddings: one float32 vector per (candidate, embedding model), for retrieval.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

Adds ``candidate_embeddings`` (candidate id, model name, dimension, the vector as little-endian
float32 bytes, creation time) with an index on (model, candidate_id). Nothing to backfill:
embeddings are written when a model embeds the stored candidates.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the embeddings table and its model index."""
    op.create_table(
        "candidate_embeddings",
        sa.Column("candidate_id", sa.String(length=64), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["candidate_id"],
            ["candidates.id"],
            name=op.f("fk_candidate_embeddings_candidate_id_candidates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("candidate_id", "model", name=op.f("pk_candidate_embeddings")),
    )
    op.create_index(
        "ix_candidate_embeddings_model_candidate_id", "candidate_embeddings", ["model", "candidate_id"], unique=False
    )


def downgrade() -> None:
    """Drop the embeddings table (its vectors are lost)."""
    op.drop_index("ix_candidate_embeddings_model_candidate_id", table_name="candidate_embeddings")
    op.drop_table("candidate_embeddings")
