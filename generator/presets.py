"""Named configurations (config as code) for the datasets crystaloop ships.

``preset_for("perov_5/train")`` returns the settings the shipped checkpoint was trained with;
``crystaloop generator train --dataset perov_5`` uses them, and ``--config FILE`` overrides
individual fields. Sizes are chosen to train on two CPU cores in under an hour. The dataset
facts a preset uses (which properties to condition on) come from the dataset's card
(:mod:`crystaloop.data.datasets.cards`).
"""

from __future__ import annotations

import copy

from crystaloop.data.datasets.cards import card_for_spec, dataset_card
from crystaloop.generator.config import GeneratorConfig

__all__ = ["PRESETS", "preset_for", "build_config"]

PRESETS: dict[str, dict] = {
    # 5-atom perovskites, 56 elements: mostly structure prediction (csp_fraction 0.75) with
    # de novo capacity; conditioned on the card's properties (formation energy, direct band gap).
    "perov_5": {
        "network": {"hidden": 128, "layers": 4, "fourier_frequencies": 16,
                    "properties": list(dataset_card("perov_5").conditioning)},
        "diffusion": {"csp_fraction": 0.75, "condition_dropout": 0.2},
        "train": {"epochs": 1500, "batch_size": 256, "learning_rate": 1e-3, "checkpoint_every": 25},
        "max_atoms": 20,
    },
    # 6–24-atom carbon: one species, so structure prediction and de novo coincide except for
    # the number of atoms; conditioned on the card's property (energy per atom).
    "carbon_24": {
        "network": {"hidden": 128, "layers": 4, "fourier_frequencies": 16,
                    "properties": list(dataset_card("carbon_24").conditioning)},
        "diffusion": {"csp_fraction": 1.0, "condition_dropout": 0.2},
        "train": {"epochs": 600, "batch_size": 128, "learning_rate": 1e-3, "checkpoint_every": 25},
        "max_atoms": max(dataset_card("carbon_24").atoms_per_cell),
    },
}
"""Card name → GeneratorConfig fields. A carded dataset without an entry (mp_20: no tuned
preset yet) trains with the GeneratorConfig defaults."""


def preset_for(dataset: str) -> dict:
    """Preset fields for a dataset spec such as ``perov_5/train``.

    A carded dataset gives its preset (an empty dict for a card without one, e.g. ``mp_20``);
    an existing file or folder (a user's own data) gives an empty dict (GeneratorConfig
    defaults).

    Raises:
        UnknownComponentError: ``dataset`` is neither a carded dataset nor an existing path.
    """
    card = card_for_spec(dataset)
    if card is None or card.name not in PRESETS:
        return {}
    return copy.deepcopy(PRESETS[card.name])


def build_config(dataset: str, overrides: dict | None = None) -> GeneratorConfig:
    """Preset for ``dataset`` with ``overrides`` merged in (nested dicts merge key by key)."""
    fields = preset_for(dataset)
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(fields.get(key), dict):
            fields[key] = {**fields[key], **value}
        else:
            fields[key] = value
    fields["dataset"] = dataset
    return GeneratorConfig.model_validate(fields)
