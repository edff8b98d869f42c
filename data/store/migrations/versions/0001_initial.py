"""Initial candidate store schema: campaigns, iterations, candidates and their records.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Frozen snapshot: the status values below are those of this revision, not imported from the code
(a new status needs a new migration that widens the check constraints).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUSES = "'imported', 'generated', 'rejected', 'scored', 'selected', 'evaluated', 'failed'"


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _candidate_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["candidate_id"], ["candidates.id"], name=op.f(f"fk_{table}_candidate_id_candidates"), ondelete="CASCADE"
    )


def upgrade() -> None:
    """Create every table of the store."""
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("config_json", sa.Text(), nullable=False),
        sa.Column("config_hash", sa.Text(), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
    )
    op.create_table(
        "candidates",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("lattice", sa.Text(), nullable=False),
        sa.Column("frac_coords", sa.Text(), nullable=False),
        sa.Column("numbers", sa.Text(), nullable=False),
        sa.Column("reduced_formula", sa.Text(), nullable=False),
        sa.Column("chemical_formula_anonymous", sa.Text(), nullable=True),
        sa.Column("elements", sa.Text(), nullable=False),
        sa.Column("nelements", sa.Integer(), nullable=False),
        sa.Column("nsites", sa.Integer(), nullable=False),
        sa.Column("spacegroup_number", sa.Integer(), nullable=True),
        sa.Column("volume", sa.Float(), nullable=False),
        sa.Column("density", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("campaign_id", sa.Text(), nullable=True),
        sa.Column("iteration", sa.Integer(), nullable=True),
        sa.Column("provenance_json", sa.Text(), nullable=False),
        sa.Column("condition_json", sa.Text(), nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.CheckConstraint(f"status IN ({_STATUSES})", name=op.f("ck_candidates_status")),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], name=op.f("fk_candidates_campaign_id_campaigns")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_candidates")),
    )
    for column in (
        "campaign_id",
        "created_at",
        "nelements",
        "nsites",
        "reduced_formula",
        "spacegroup_number",
    ):
        op.create_index(op.f(f"ix_candidates_{column}"), "candidates", [column], unique=False)
    op.create_index("ix_candidates_status_created_at_id", "candidates", ["status", "created_at", "id"], unique=False)
    op.create_table(
        "iterations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("campaign_id", sa.Text(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        _timestamp("started_at"),
        _timestamp("finished_at", nullable=True),
        sa.Column("report_json", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_iterations_campaign_id_campaigns"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_iterations")),
        sa.UniqueConstraint("campaign_id", "index", name=op.f("uq_iterations_campaign_id_index")),
    )
    op.create_table(
        "candidate_elements",
        sa.Column("candidate_id", sa.String(length=64), nullable=False),
        sa.Column("element", sa.String(length=3), nullable=False),
        _candidate_fk("candidate_elements"),
        sa.PrimaryKeyConstraint("candidate_id", "element", name=op.f("pk_candidate_elements")),
    )
    op.create_index("ix_candidate_elements_element", "candidate_elements", ["element", "candidate_id"], unique=False)
    op.create_table(
        "measurements",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("candidate_id", sa.String(length=64), nullable=False),
        sa.Column("oracle", sa.Text(), nullable=False),
        sa.Column("property", sa.Text(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("units", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        _timestamp("created_at"),
        sa.CheckConstraint("status IN ('ok', 'failed')", name=op.f("ck_measurements_status")),
        _candidate_fk("measurements"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_measurements")),
        sa.UniqueConstraint(
            "candidate_id", "oracle", "property", name=op.f("uq_measurements_candidate_id_oracle_property")
        ),
    )
    op.create_table(
        "predictions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("candidate_id", sa.String(length=64), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("property", sa.Text(), nullable=False),
        sa.Column("mean", sa.Float(), nullable=True),
        sa.Column("std", sa.Float(), nullable=True),
        sa.Column("units", sa.Text(), nullable=False),
        _timestamp("created_at"),
        _candidate_fk("predictions"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_predictions")),
        sa.UniqueConstraint(
            "candidate_id", "model", "property", name=op.f("uq_predictions_candidate_id_model_property")
        ),
    )
    op.create_table(
        "status_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("candidate_id", sa.String(length=64), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        _timestamp("at"),
        sa.CheckConstraint(f"to_status IN ({_STATUSES})", name=op.f("ck_status_history_to_status")),
        _candidate_fk("status_history"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_history")),
    )
    op.create_index(op.f("ix_status_history_candidate_id"), "status_history", ["candidate_id"], unique=False)
    op.create_table(
        "verdicts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("candidate_id", sa.String(length=64), nullable=False),
        sa.Column("guard", sa.Text(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        _timestamp("created_at"),
        _candidate_fk("verdicts"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verdicts")),
        sa.UniqueConstraint("candidate_id", "guard", name=op.f("uq_verdicts_candidate_id_guard")),
    )


def downgrade() -> None:
    """Drop every table of the store (all data is lost)."""
    op.drop_table("verdicts")
    op.drop_index(op.f("ix_status_history_candidate_id"), table_name="status_history")
    op.drop_table("status_history")
    op.drop_table("predictions")
    op.drop_table("measurements")
    op.drop_index("ix_candidate_elements_element", table_name="candidate_elements")
    op.drop_table("candidate_elements")
    op.drop_table("iterations")
    op.drop_index("ix_candidates_status_created_at_id", table_name="candidates")
    for column in (
        "spacegroup_number",
        "reduced_formula",
        "nsites",
        "nelements",
        "created_at",
        "campaign_id",
    ):
        op.drop_index(op.f(f"ix_candidates_{column}"), table_name="candidates")
    op.drop_table("candidates")
    op.drop_table("campaigns")
