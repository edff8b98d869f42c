"""Alembic revision scripts of the candidate store, oldest first (``0001_initial`` …)."""
