"""Run the store's alembic migrations from code (no ``alembic.ini``).

``alembic_config()`` points alembic at :mod:`crystaloop.data.store.migrations`; ``upgrade`` and
``downgrade`` run inside one write transaction of the given engine (so concurrent upgrades queue
rather than collide); ``current_revision`` / ``head_revision`` say where a database and this code
stand.
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine

from crystaloop.data.errors import StoreError
from crystaloop.data.store.engine import redact_url, write_transaction

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "head_revision",
    "known_revisions",
    "current_revision",
    "upgrade",
    "downgrade",
    "check_revision",
]

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An alembic ``Config`` for the store's migrations, bound to ``connection`` or ``url``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest revision this code knows."""
    head = _scripts().get_current_head()
    if head is None:  # pragma: no cover - the package ships at least one revision
        raise StoreError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def known_revisions() -> set[str]:
    """Every revision id shipped with this code."""
    return {script.revision for script in _scripts().walk_revisions()}


def current_revision(connection: Connection) -> str | None:
    """The database's revision (``None`` for a database the store never migrated)."""
    from alembic.runtime.migration import MigrationContext

    heads = MigrationContext.configure(connection).get_current_heads()
    if len(heads) > 1:
        raise StoreError(f"database has several alembic heads {sorted(heads)}; expected one")
    return heads[0] if heads else None


def check_revision(connection: Connection, url: str = "") -> str | None:
    """The database's revision, after refusing one newer than this code (unknown to it).

    Raises:
        StoreError: the database was migrated by a newer crystaloop.
    """
    revision = current_revision(connection)
    if revision is not None and revision not in known_revisions():
        raise StoreError(
            f"database {redact_url(url) or ''} has schema revision {revision!r}, which this crystaloop does not "
            f"know (its newest is {head_revision()!r}); upgrade crystaloop to open it"
        )
    return revision


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database of ``engine`` up to ``revision`` in one transaction.

    The revision is checked under the write lock (SQLite) or an advisory lock (PostgreSQL, in
    ``env.py``), so several processes opening a fresh store at once migrate it exactly once.
    """
    from alembic import command

    with write_transaction(engine) as conn:
        current = check_revision(conn, str(engine.url))
        if revision == "head" and current == head_revision():
            return  # nothing to do; skip alembic's machinery (and its log lines)
        logger.info("migrating store %s from revision %s to %s", redact_url(engine.url), current, revision)
        command.upgrade(alembic_config(conn), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    """Migrate the database of ``engine`` down to ``revision`` (``"base"``: drop every table)."""
    from alembic import command

    with write_transaction(engine) as conn:
        check_revision(conn, str(engine.url))
        command.downgrade(alembic_config(conn), revision)
