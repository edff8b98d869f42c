"""Per-process caches of what tasks work on: components built from a config, open stores.

Tasks take plain, picklable inputs (the campaign config, a store URL, candidate ids) and look the
heavy objects up here, so the same task runs in the flow's process, in a thread pool or on a Dask
worker process (which builds its own copy once). Tests install prepared components (a slow or
flaky oracle, say) with :func:`install_components`; those are seen only in this process.
"""

from __future__ import annotations

import logging
import threading

from crystaloop.data.store import CandidateStore, resolve_store_url
from crystaloop.loop.components import Components, build_components
from crystaloop.loop.config import CampaignConfig

__all__ = ["components_for", "install_components", "uninstall_components", "store_for", "close_stores"]

logger = logging.getLogger(__name__)

_LOCK = threading.Lock()
_COMPONENTS: dict[str, Components] = {}
_INSTALLED: dict[str, Components] = {}
_STORES: dict[str, CandidateStore] = {}


def install_components(config: CampaignConfig, components: Components) -> None:
    """Use ``components`` for ``config`` (keyed by its hash) in this process instead of building them."""
    with _LOCK:
        _INSTALLED[config.config_hash()] = components


def uninstall_components(config: CampaignConfig) -> None:
    """Forget components installed (or built) for ``config``."""
    with _LOCK:
        _INSTALLED.pop(config.config_hash(), None)
        _COMPONENTS.pop(config.config_hash(), None)


def components_for(config: CampaignConfig) -> Components:
    """The components of ``config``: installed ones, else built once per process (weights load
    on the first call)."""
    key = config.config_hash()
    with _LOCK:
        if key in _INSTALLED:
            return _INSTALLED[key]
        if key not in _COMPONENTS:
            logger.info("building components of campaign %s (%s)", config.name, key)
            _COMPONENTS[key] = build_components(config)
        return _COMPONENTS[key]


def store_for(url: str | None) -> CandidateStore:
    """An open store for ``url`` (resolved as the CLI does), shared by this process's threads.

    ``url`` may be a redacted URL or a ``prefect-secret:NAME`` reference
    (:func:`~crystaloop.flows.parameters.reveal_store_url`).
    """
    from crystaloop.flows.parameters import reveal_store_url

    resolved = resolve_store_url(reveal_store_url(url) if url else url)
    with _LOCK:
        store = _STORES.get(resolved)
        if store is None:
            store = _STORES[resolved] = CandidateStore(resolved)
        return store


def close_stores() -> None:
    """Close every store this process opened through :func:`store_for`."""
    with _LOCK:
        for store in _STORES.values():
            store.close()
        _STORES.clear()
