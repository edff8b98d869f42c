"""OPTIMADE v1.2 over the candidate store: filter translation, read-only search, the API.

* :mod:`~crystaloop.data.optimade.parsing` — filter text → parse tree with the ``optimade``
  package's grammar (its ``LarkParser`` has the last word);
* :mod:`~crystaloop.data.optimade.filters` — parse tree → SQLAlchemy expression (``FilterTranslator``);
* :mod:`~crystaloop.data.optimade.probes` — the SQL building blocks of translation (child-table probes);
* :mod:`~crystaloop.data.optimade.limits` — expensive-query slots and the in-flight bound (503 + ``Retry-After``);
* :mod:`~crystaloop.data.optimade.fields` — the structures fields served, ``_crystaloop_`` ones included;
* :mod:`~crystaloop.data.optimade.search` — read-only engine and paged searches (``StructureSearch``);
* :mod:`~crystaloop.data.optimade.app` — the FastAPI app (``create_app``), run by ``crystaloop serve``;

Importing this package loads no FastAPI and builds no parser; nothing is opened until asked.
"""

from crystaloop.data.optimade.config import API_VERSION, OptimadeConfig
from crystaloop.data.optimade.errors import (
    BadFilterError,
    FilterNotImplementedError,
    OptimadeRequestError,
    OptimadeWarning,
)
from crystaloop.data.optimade.filters import FilterTranslator, Translation
from crystaloop.data.optimade.search import Page, StructureSearch, open_readonly_engine

__all__ = [
    "API_VERSION",
    "OptimadeConfig",
    "OptimadeRequestError",
    "BadFilterError",
    "FilterNotImplementedError",
    "OptimadeWarning",
    "FilterTranslator",
    "Translation",
    "StructureSearch",
    "Page",
    "open_readonly_engine",
]
