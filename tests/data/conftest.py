"""Store fixtures: every store test runs on a SQLite file and on a fresh PostgreSQL schema.

PostgreSQL is looked for on 127.0.0.1:5432, database ``test``, trust auth as user ``postgres``
or ``root`` (or the libpq URL in ``$CRYSTALOOP_TEST_POSTGRES_URL``). Each test gets its own
schema ``cl_<random>`` (selected with ``options=-csearch_path=…`` in the URL), dropped afterwards.
Without a server the postgres cases skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from functools import cache

import pytest

PG_HOST, PG_PORT, PG_DATABASE = "127.0.0.1", 5432, "test"
PG_USERS = ("postgres", "root")


@cache
def _postgres_conninfo() -> tuple[str | None, str]:
    """(libpq URL of a working admin connection or None, what was tried and why it failed)."""
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - psycopg is a dependency
        return None, f"psycopg is not importable: {exc}"
    override = os.environ.get("CRYSTALOOP_TEST_POSTGRES_URL")
    candidates = [override] if override else [f"postgresql://{u}@{PG_HOST}:{PG_PORT}/{PG_DATABASE}" for u in PG_USERS]
    errors = []
    for conninfo in candidates:
        try:
            with psycopg.connect(conninfo, connect_timeout=3, autocommit=True) as conn:
                conn.execute("SELECT 1")
            return conninfo, ""
        except psycopg.Error as exc:
            errors.append(f"{conninfo}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}")
    return None, "; ".join(errors)


def require_postgres() -> str:
    """The admin libpq URL, or skip (fail under CI=true) when no server answers."""
    conninfo, why = _postgres_conninfo()
    if conninfo is None:
        message = f"PostgreSQL is not reachable on {PG_HOST}:{PG_PORT} (database {PG_DATABASE!r}): {why}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI=true requires it")
        pytest.skip(f"{message}; start a server (trust auth) to run the postgres cases")
    return conninfo


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A store URL pointing at a fresh, empty schema of the test database (dropped afterwards)."""
    import psycopg
    from psycopg import sql

    conninfo = require_postgres()
    schema = f"cl_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    url = conninfo.replace("postgresql://", "postgresql+psycopg://", 1) + f"?options=-csearch_path%3D{schema}"
    try:
        yield url
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """A store URL of a SQLite file in a not-yet-existing folder (the store creates it)."""
    return f"sqlite:///{tmp_path / 'db' / 'store.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    """The URL of an empty store, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(store_url: str):
    """An open, migrated :class:`CandidateStore` on each backend, closed afterwards."""
    from crystaloop.data.store import CandidateStore

    s = CandidateStore(store_url)
    try:
        yield s
    finally:
        s.close()
