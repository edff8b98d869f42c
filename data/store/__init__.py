"""The candidate store: every candidate, its status history and results, in SQLite or PostgreSQL.

Public API::

    from crystaloop.data.store import CandidateStore, CandidateFilter

    with CandidateStore() as store:            # $CRYSTALOOP_DB_URL or sqlite:///crystaloop.db
        store.add_many(candidates)
        store.query(CandidateFilter(elements=["Sr", "O"], status=["scored"]))

Importing this package opens nothing; a database is touched only when a store is created.
"""

from crystaloop.data.store.engine import DEFAULT_STORE_URL, ENV_VAR, existing_store_url, redact_url, resolve_store_url
from crystaloop.data.store.migrate import current_revision, downgrade, head_revision, upgrade
from crystaloop.data.store.queries import CandidateFilter
from crystaloop.data.store.store import AddReport, CandidateStore, IterationRecord, StatusChange

__all__ = [
    "CandidateStore",
    "CandidateFilter",
    "AddReport",
    "StatusChange",
    "IterationRecord",
    "resolve_store_url",
    "existing_store_url",
    "redact_url",
    "DEFAULT_STORE_URL",
    "ENV_VAR",
    "head_revision",
    "current_revision",
    "upgrade",
    "downgrade",
]
