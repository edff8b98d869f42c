"""Store URLs in flow parameters: Prefect stores and shows them without their password.

Prefect records the parameters of every flow run when it creates the run (its database, the API,
the UI's "Parameters" tab), and a deployment keeps its default parameters there too. A store URL
such as ``postgresql://crystaloop:s3cret@db/campaigns`` must not end up there in clear, yet the
run needs the real URL. Two mechanisms, both applied by :mod:`crystaloop.flows.campaign` and
:mod:`crystaloop.flows.deploy`:

* a flow called from Python (``campaign flow``, ``make demo``, the iteration subflows) is wrapped
  by :func:`redacting`: what Prefect *stores* is :func:`redact_parameters` of the parameters
  (every URL with a password shown as ``postgresql://crystaloop:***@db/campaigns``, wherever it
  sits: ``store_url``, ``config.store_url``, overrides), while the run itself receives the real
  values, in memory;
* a deployment's runs receive exactly the parameters stored with it, so :func:`deployment_store_url`
  puts the redacted URL there and remembers the real one in this process's environment
  (``$CRYSTALOOP_STORE_URLS``, a JSON map redacted → real, inherited by the flow-run processes that
  ``serve`` starts). Inside the run :func:`reveal_store_url` maps a redacted URL back, from that map
  or from ``$CRYSTALOOP_DB_URL`` when its redaction matches.

On remote workers neither helps, or the URL should not be in any parameter at all: a deployment
can name a Prefect **Secret block** instead (``campaign deploy --store-url-secret NAME``, flow
parameter ``store_url_secret``). The flow then passes only the reference ``prefect-secret:NAME``
(:func:`secret_reference`) to its subflows and tasks, and :func:`reveal_store_url` loads the block
from the Prefect API when a store is opened (once per process). The URL is in no flow-run
parameter, redacted or not.

Example::

    url = deployment_store_url("postgresql+psycopg://cl:s3cret@db/cl")   # 'postgresql+psycopg://cl:***@db/cl'
    reveal_store_url(url)                                                  # the real URL again, in this process
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from crystaloop.data.errors import CrystaloopError
from crystaloop.data.store import ENV_VAR, redact_url

__all__ = [
    "URLS_ENV_VAR",
    "SECRET_PREFIX",
    "redact_parameters",
    "redacting",
    "deployment_store_url",
    "reveal_store_url",
    "is_redacted",
    "secret_reference",
    "store_url_from_secret",
]

URLS_ENV_VAR = "CRYSTALOOP_STORE_URLS"
"""JSON object ``{redacted URL: real URL}`` of the store URLs this process handed to deployments."""
_MASK = ":***@"
SECRET_PREFIX = "prefect-secret:"
"""Prefix of a store-URL reference to a Prefect Secret block (``prefect-secret:my-db-url``)."""
_SECRETS: dict[str, str] = {}  # block name -> URL, loaded once per process

F = TypeVar("F")


def _redact_text(text: str) -> str:
    """``text`` with its password hidden if it is a URL that has one; any other string unchanged."""
    if "://" not in text or "@" not in text:
        return text
    try:
        has_password = make_url(text).password is not None
    except (ArgumentError, ValueError):
        return text
    return redact_url(text) if has_password else text


def redact_parameters(value: Any) -> Any:
    """``value`` (JSON-like: dicts, lists, strings…) with every URL's password replaced by ``***``."""
    if isinstance(value, str):
        return _redact_text(value)
    if isinstance(value, dict):
        return {key: redact_parameters(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_parameters(item) for item in value]
    return value


def redacting(flow: F) -> F:
    """``flow`` (a Prefect ``Flow``) storing its runs' parameters redacted (see the module docstring).

    Prefect serialises a run's parameters with ``Flow.serialize_parameters`` only to store them;
    the run is called with the originals. ``Flow.with_options`` returns a plain copy: wrap it again.
    """
    serialize: Callable[[dict[str, Any]], dict[str, Any]] = flow.serialize_parameters  # type: ignore[attr-defined]

    def serialize_redacted(parameters: dict[str, Any]) -> dict[str, Any]:
        return redact_parameters(serialize(parameters))  # type: ignore[no-any-return]

    flow.serialize_parameters = serialize_redacted  # type: ignore[attr-defined]
    return flow


def is_redacted(url: str) -> bool:
    """Whether ``url`` is a URL whose password was replaced by ``***``."""
    return _MASK in url


def _known_urls() -> dict[str, str]:
    try:
        known = json.loads(os.environ.get(URLS_ENV_VAR, "") or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in known.items()} if isinstance(known, dict) else {}


def deployment_store_url(url: str) -> str:
    """The form of ``url`` to store with a deployment: redacted, the real URL remembered in this process.

    A URL without a password is returned unchanged.
    """
    redacted = _redact_text(url)
    if redacted != url:
        os.environ[URLS_ENV_VAR] = json.dumps({**_known_urls(), redacted: url})
    return redacted


def reveal_store_url(url: str) -> str:
    """The real store URL behind ``url`` (``url`` itself unless it is redacted).

    Raises:
        CrystaloopError: ``url`` is redacted and neither ``$CRYSTALOOP_STORE_URLS`` nor
            ``$CRYSTALOOP_DB_URL`` of this process holds the URL it stands for.
    """
    if url.startswith(SECRET_PREFIX):
        return store_url_from_secret(url[len(SECRET_PREFIX) :])
    if not is_redacted(url):
        return url
    real = _known_urls().get(url)
    if real is not None:
        return real
    env = os.environ.get(ENV_VAR, "").strip()
    if env and redact_url(env) == url:
        return env
    raise CrystaloopError(
        f"the store URL {url!r} reached this flow run with its password hidden, and this process does not know the "
        f"real one; set ${ENV_VAR} to it in the environment of the process that serves the deployment"
    )


def secret_reference(name: str) -> str:
    """The reference ``prefect-secret:<name>`` that stands for the store URL held by Secret block ``name``.

    Raises:
        CrystaloopError: ``name`` is not a valid block name (lowercase letters, digits, dashes).
    """
    import re

    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name or ""):
        raise CrystaloopError(f"Secret block name {name!r} is not valid; use lowercase letters, digits and dashes (e.g. 'crystaloop-db-url')")
    return SECRET_PREFIX + name


def store_url_from_secret(name: str) -> str:
    """The store URL held by the Prefect Secret block ``name`` (loaded from the Prefect API once per process).

    Create the block once, where the URL is known::

        from prefect.blocks.system import Secret
        Secret(value="postgresql+psycopg://cl:s3cret@db/cl").save("crystaloop-db-url")

    (or ``prefect block create secret`` / the UI's *Blocks* page).

    Raises:
        CrystaloopError: no Secret block has that name, or it does not hold a string.
    """
    if name in _SECRETS:
        return _SECRETS[name]
    from prefect.blocks.system import Secret
    from prefect.exceptions import ObjectNotFound

    try:
        value = Secret.load(name).get()  # type: ignore[union-attr]
    except (ValueError, ObjectNotFound) as exc:
        raise CrystaloopError(
            f"no Prefect Secret block {name!r} holds the store URL ({exc}); create it with "
            f"Secret(value=URL).save({name!r}) from prefect.blocks.system, or on the UI's Blocks page"
        ) from None
    if not isinstance(value, str) or not value.strip():
        raise CrystaloopError(f"Prefect Secret block {name!r} holds a {type(value).__name__}, not a store URL string")
    _SECRETS[name] = value.strip()
    return _SECRETS[name]
