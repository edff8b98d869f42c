"""Alembic environment of the candidate store.

Run through :mod:`crystaloop.data.store.migrate` (``Config()`` with ``script_location`` set, no
``alembic.ini``): the caller passes an open connection in ``config.attributes["connection"]``, or
a URL in the ``sqlalchemy.url`` main option. Migrations run in one transaction on both backends
(SQLite's DDL is transactional once the driver stops committing behind our back, see
:mod:`crystaloop.data.store.engine`); concurrent upgrades queue on SQLite's write lock or a
PostgreSQL advisory lock, so two processes opening a fresh store at once do not collide.

Importing this module outside an alembic command does nothing.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, func, select

from crystaloop.data.store.engine import create_store_engine, write_transaction
from crystaloop.data.store.schema import Base, include_object

MIGRATION_LOCK_KEY = 0x63727973  # pg advisory lock id ("crys"), held for the migration transaction


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        include_object=include_object,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
        transactional_ddl=True,
    )


def _run(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
        context.run_migrations()


def run_migrations_offline(url: str) -> None:
    """Write the migration SQL instead of running it (``alembic upgrade --sql``)."""
    context.configure(url=url, target_metadata=Base.metadata, include_object=include_object, literal_binds=True, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online(config: object) -> None:
    """Run the migrations on the given connection, or on a fresh engine for the configured URL."""
    connection = config.attributes.get("connection")  # type: ignore[attr-defined]
    if connection is not None:
        _run(connection)
        return
    engine = create_store_engine(config.get_main_option("sqlalchemy.url"))  # type: ignore[attr-defined]
    try:
        with write_transaction(engine) as conn:
            # The outer write transaction holds SQLite's write lock; alembic nests inside it.
            _run(conn)
    finally:
        engine.dispose()


def _main() -> None:
    config = getattr(context, "config", None)
    if config is None:  # imported outside an alembic command
        return
    if context.is_offline_mode():
        run_migrations_offline(config.get_main_option("sqlalchemy.url"))
    else:
        run_migrations_online(config)


_main()
