"""Alembic migrations of the candidate store (run programmatically by :mod:`crystaloop.data.store.migrate`)."""
