"""crystaloop: closed-loop inverse materials design.

Packages (layered one way, ``flows → loop → {generator, surrogates, multimodal} → data``):

* :mod:`crystaloop.data`: crystal records, datasets, periodic graphs, the candidate store.
* :mod:`crystaloop.generator`: crystal diffusion model and samplers.
* :mod:`crystaloop.surrogates`: property models, uncertainty, GP heads, MLIP oracles.
* :mod:`crystaloop.multimodal`: structure / XRD / text encoders and retrieval.
* :mod:`crystaloop.loop`: campaign engine, strategies and guards.
* :mod:`crystaloop.flows`: Prefect flows and deployments.

The Python API (:mod:`crystaloop.api`) is re-exported here and loaded on first use:
``crystaloop.generate``, ``predict``, ``relax``, ``e_above_hull``, ``open_store``, ``as_crystals``.

Importing the package has no side effects and imports no heavy dependency.
"""

__version__ = "0.1.0"

_API = ("generate", "predict", "relax", "e_above_hull", "open_store", "as_crystals")
__all__ = ["__version__", *_API]


def __getattr__(name: str):  # noqa: ANN202 - PEP 562: the API loads on first use
    if name in _API:
        from crystaloop import api

        return getattr(api, name)
    raise AttributeError(f"module 'crystaloop' has no attribute {name!r}")
