"""Element-set summary: one row per distinct element list with its candidate count, kept by triggers.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

Adds ``candidate_element_sets`` (``elements`` text primary key = ``candidates.elements``,
``nelements``, ``n`` bigint: how many candidates have exactly this element list), fills it from
the stored candidates (one ``GROUP BY`` over ``candidates``), and adds triggers on ``candidates``
that keep it exact on every write, whatever writes the row (the store, ``COPY``, plain SQL):

* PostgreSQL: statement-level ``AFTER INSERT`` / ``AFTER DELETE`` triggers with transition
  tables (one aggregate per statement, so a ``COPY`` of 20,000 rows is one upsert per distinct
  list, in sorted order: concurrent writers lock summary rows in one global order), a row-level
  ``AFTER UPDATE OF elements`` trigger that fires only when the list really changes (status
  updates cost nothing), and ``AFTER TRUNCATE``. All are ``ENABLE ALWAYS``: they also fire under
  ``session_replication_role = replica``, which the bulk loader uses to skip foreign-key checks.
  Rows skipped by ``INSERT … ON CONFLICT DO NOTHING`` are not in the transition table: an
  idempotent re-add counts nothing.
* SQLite: row-level ``AFTER INSERT`` / ``AFTER DELETE`` / ``AFTER UPDATE OF elements`` triggers
  (SQLite serialises writers). ``INSERT OR IGNORE`` fires nothing for ignored rows.
  ``INSERT OR REPLACE`` on ``candidates`` would bypass the delete trigger (SQLite runs no delete
  triggers for REPLACE without ``recursive_triggers``); the store never uses it. A later revision
  that rebuilds ``candidates`` in batch mode (copy and rename) drops these triggers and must
  create them again.

A summary row whose count reaches 0 is deleted. Names are repeated here (a migration keeps its
own copy): the table is :class:`crystaloop.data.store.schema.ElementSetRow`, the trigger names
:data:`crystaloop.data.store.schema.ELEMENT_SET_TRIGGERS`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE = "candidate_element_sets"

_POSTGRES = (
    f"""
    CREATE FUNCTION {_TABLE}_insert() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {_TABLE} AS s (elements, nelements, n)
        SELECT elements, min(nelements), count(*) FROM new_candidates GROUP BY elements ORDER BY elements
        ON CONFLICT (elements) DO UPDATE SET n = s.n + EXCLUDED.n;
        RETURN NULL;
    END $$
    """,
    f"""
    CREATE FUNCTION {_TABLE}_delete() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {_TABLE} AS s (elements, nelements, n)
        SELECT elements, min(nelements), -count(*) FROM old_candidates GROUP BY elements ORDER BY elements
        ON CONFLICT (elements) DO UPDATE SET n = s.n + EXCLUDED.n;
        DELETE FROM {_TABLE} WHERE n <= 0 AND elements IN (SELECT elements FROM old_candidates);
        RETURN NULL;
    END $$
    """,
    f"""
    CREATE FUNCTION {_TABLE}_update() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        -- the smaller key first: two updates lock summary rows in one order
        IF OLD.elements < NEW.elements THEN
            UPDATE {_TABLE} SET n = n - 1 WHERE elements = OLD.elements;
        END IF;
        INSERT INTO {_TABLE} AS s (elements, nelements, n) VALUES (NEW.elements, NEW.nelements, 1)
        ON CONFLICT (elements) DO UPDATE SET n = s.n + 1;
        IF OLD.elements > NEW.elements THEN
            UPDATE {_TABLE} SET n = n - 1 WHERE elements = OLD.elements;
        END IF;
        DELETE FROM {_TABLE} WHERE elements = OLD.elements AND n <= 0;
        RETURN NULL;
    END $$
    """,
    f"""
    CREATE FUNCTION {_TABLE}_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM {_TABLE};
        RETURN NULL;
    END $$
    """,
    f"""CREATE TRIGGER {_TABLE}_insert AFTER INSERT ON candidates
        REFERENCING NEW TABLE AS new_candidates FOR EACH STATEMENT EXECUTE FUNCTION {_TABLE}_insert()""",
    f"""CREATE TRIGGER {_TABLE}_delete AFTER DELETE ON candidates
        REFERENCING OLD TABLE AS old_candidates FOR EACH STATEMENT EXECUTE FUNCTION {_TABLE}_delete()""",
    f"""CREATE TRIGGER {_TABLE}_update AFTER UPDATE OF elements ON candidates FOR EACH ROW
        WHEN (OLD.elements IS DISTINCT FROM NEW.elements) EXECUTE FUNCTION {_TABLE}_update()""",
    f"CREATE TRIGGER {_TABLE}_truncate AFTER TRUNCATE ON candidates FOR EACH STATEMENT EXECUTE FUNCTION {_TABLE}_truncate()",
    *(f"ALTER TABLE candidates ENABLE ALWAYS TRIGGER {_TABLE}_{kind}" for kind in ("insert", "delete", "update", "truncate")),
)

_SQLITE = (
    f"""CREATE TRIGGER {_TABLE}_insert AFTER INSERT ON candidates BEGIN
        INSERT OR IGNORE INTO {_TABLE} (elements, nelements, n) VALUES (NEW.elements, NEW.nelements, 0);
        UPDATE {_TABLE} SET n = n + 1 WHERE elements = NEW.elements;
    END""",
    f"""CREATE TRIGGER {_TABLE}_delete AFTER DELETE ON candidates BEGIN
        UPDATE {_TABLE} SET n = n - 1 WHERE elements = OLD.elements;
        DELETE FROM {_TABLE} WHERE elements = OLD.elements AND n <= 0;
    END""",
    f"""CREATE TRIGGER {_TABLE}_update AFTER UPDATE OF elements ON candidates WHEN OLD.elements IS NOT NEW.elements BEGIN
        INSERT OR IGNORE INTO {_TABLE} (elements, nelements, n) VALUES (NEW.elements, NEW.nelements, 0);
        UPDATE {_TABLE} SET n = n + 1 WHERE elements = NEW.elements;
        UPDATE {_TABLE} SET n = n - 1 WHERE elements = OLD.elements;
        DELETE FROM {_TABLE} WHERE elements = OLD.elements AND n <= 0;
    END""",
)


def upgrade() -> None:
    """Create the summary table, fill it from the stored candidates, and add its triggers."""
    op.create_table(
        _TABLE,
        sa.Column("elements", sa.Text(), nullable=False),
        sa.Column("nelements", sa.Integer(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("elements", name=op.f(f"pk_{_TABLE}")),
    )
    # Inside the migration's transaction (and, on PostgreSQL, before the triggers exist, under the
    # lock below): no write can slip between the backfill and the first trigger.
    if op.get_bind().dialect.name == "postgresql":
        op.execute("LOCK TABLE candidates IN SHARE ROW EXCLUSIVE MODE")
    op.execute(
        f"INSERT INTO {_TABLE} (elements, nelements, n) "
        "SELECT elements, min(nelements), count(*) FROM candidates GROUP BY elements"
    )
    for statement in _POSTGRES if op.get_bind().dialect.name == "postgresql" else _SQLITE:
        op.execute(statement)


def downgrade() -> None:
    """Drop the triggers (and their functions on PostgreSQL) and the summary table."""
    postgres = op.get_bind().dialect.name == "postgresql"
    for kind in ("insert", "delete", "update", "truncate"):
        if postgres:
            op.execute(f"DROP TRIGGER IF EXISTS {_TABLE}_{kind} ON candidates")
            op.execute(f"DROP FUNCTION IF EXISTS {_TABLE}_{kind}()")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {_TABLE}_{kind}")
    op.drop_table(_TABLE)
