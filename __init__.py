"""crystaloop: closed-loop inverse materials design.

Packages (layered one way, ``flows → loop → {generator, surrogates, multimodal} → data``):

* :mod:`crystaloop.data`: crystal records, datasets, periodic graphs, the candidate store.
* :mod:`crystaloop.generator`: crystal diffusion model and samplers.
* :mod:`crystaloop.surrogates`: property models, uncertainty, GP heads, MLIP oracles.
* :mod:`crystaloop.multimodal`: structure / XRD / text encoders and retrieval.
* :mod:`crystaloop.loop`: campaign engine, strategies and guards.
* :mod:`crystaloop.flows`: Prefect flows and deployments.

Importing the package has no side effects and imports no heavy dependency.
"""

__version__ = "0.1.0"
