"""The shipped surrogates load offline, describe themselves and reproduce their recorded metrics."""

from __future__ import annotations

import numpy as np
import pytest

from crystaloop.data.datasets import load_dataset
from crystaloop.data.errors import UnknownComponentError
from crystaloop.surrogates.config import SurrogateConfig
from crystaloop.surrogates.ensemble import PropertyEnsemble
from crystaloop.surrogates.shipped import SHIPPED_SURROGATES, default_surrogate_for, shipped_surrogate_path
from crystaloop.surrogates.training import evaluate_ensemble


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SHIPPED_SURROGATES))
def test_shipped_surrogate_matches_its_recorded_validation_metrics(name: str) -> None:
    dataset_name, target, command = SHIPPED_SURROGATES[name]
    ensemble = PropertyEnsemble.load(shipped_surrogate_path(name))
    assert ensemble.config.targets == (target,)
    assert len(ensemble.members) >= 3  # a deep ensemble
    assert f"--target {target}" in command and name in command
    # the reproduce command asks for the network the checkpoint holds (checkpoints written before
    # the angular option existed load as distance-only, angular_degree 0)
    words = command.split()
    asked = int(words[words.index("--angular-degree") + 1]) if "--angular-degree" in words else SurrogateConfig.model_fields["angular_degree"].default
    assert ensemble.config.angular_degree == asked
    val = load_dataset(f"{dataset_name}/val")
    report = evaluate_ensemble(ensemble, val)[target]
    recorded = ensemble.metadata["metrics"]["held_out"][target]
    assert report["mae"] == pytest.approx(recorded["mae"], rel=1e-3)
    baseline = np.nanmean(np.abs(val.properties[target] - ensemble.target_mean[0]))
    assert report["mae"] < baseline  # better than predicting the training mean
    assert report["miscalibration_area"] < 0.15


def test_registry_errors_name_choices() -> None:
    with pytest.raises(UnknownComponentError, match="allowed: carbon_24-energy_per_atom"):
        shipped_surrogate_path("mp_20-band_gap")
    with pytest.raises(UnknownComponentError, match="allowed: dir_gap, energy_per_atom, heat_ref"):
        default_surrogate_for("bulk_modulus")
    assert default_surrogate_for("heat_ref") == "perov_5-heat_ref"
