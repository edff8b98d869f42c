"""crystaloop.multimodal: structure, powder-XRD and text encoders fused in one latent; retrieval.

Modules (import what you need; nothing heavy is imported here):

* :mod:`.xrd`: simulated powder patterns (pymatgen) and measurement-like augmentation, on the
  one 2θ grid (5–90°, 0.05°, Cu Kα) of :mod:`crystaloop.data.xrd_grid`;
* :mod:`.xrd_io`: measured two-column ``.xy`` / ``.csv`` patterns onto the grid;
* :mod:`.describe`: a fast text describer of crystals;
* :mod:`.text`: frozen MiniLM layer features and the learned layer mix;
* :mod:`.structure`: the invariant structure GNN; :mod:`.encoders`: the XRD CNN and the
  ``Encoder`` port; :mod:`.fusion`: the CLIP-style fusion model and its checkpoints;
* :mod:`.features`: cached per-dataset views; :mod:`.training`: training and evaluation;
* :mod:`.retrieval`: cosine index and recall metrics; :mod:`.store_index`: embeddings in the
  candidate store; :mod:`.pretrained`: the shipped checkpoint;
* :mod:`.conditioning`: generation conditions (``Condition.embedding``) from any modality;
* :mod:`.prior`: the unCLIP-style latent prior (text / XRD latent → structure latents) and its
  checkpoints; :mod:`.prior_training`: its training pairs, training and evaluation.
"""
