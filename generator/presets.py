"""Named configurations (config as code) for the datasets crystaloop ships.

``preset_for("perov_5/train")`` returns the settings the shipped checkpoint was trained with;
``crystaloop generator train --dataset perov_5`` uses them, and ``--config FILE`` overrides
individual fields. Sizes are chosen to train on two CPU cores in under an hour.
"""

from __future__ import annotations

from crystaloop.generator.config import GeneratorConfig

__all__ = ["PRESETS", "preset_for", "build_config"]

PRESETS: dict[str, dict] = {
    # 5-atom perovskites, 56 elements: mostly structure prediction (csp_fraction 0.75) with
    # de novo capacity; conditioned on formation energy and direct band gap.
    "perov_5": {
        "network": {"hidden": 128, "layers": 4, "fourier_frequencies": 16, "properties": ["heat_ref", "dir_gap"]},
        "diffusion": {"csp_fraction": 0.75, "condition_dropout": 0.2},
        "train": {"epochs": 1500, "batch_size": 256, "learning_rate": 1e-3, "checkpoint_every": 25},
        "max_atoms": 20,
    },
    # 6–24-atom carbon: one species, so structure prediction and de novo coincide except for
    # the number of atoms; conditioned on energy per atom.
    "carbon_24": {
        "network": {"hidden": 128, "layers": 4, "fourier_frequencies": 16, "properties": ["energy_per_atom"]},
        "diffusion": {"csp_fraction": 1.0, "condition_dropout": 0.2},
        "train": {"epochs": 600, "batch_size": 128, "learning_rate": 1e-3, "checkpoint_every": 25},
        "max_atoms": 24,
    },
}


def preset_for(dataset: str) -> dict:
    """Preset fields for a dataset spec such as ``perov_5/train`` (empty dict when none)."""
    name = dataset.split("/")[0]
    return dict(PRESETS.get(name, {}))


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
