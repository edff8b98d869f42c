"""Records: status transitions, conditions, predictions and measurements validate their input."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from crystaloop.data.crystal import Crystal
from crystaloop.data.errors import StatusTransitionError
from crystaloop.data.records import (
    ALLOWED_TRANSITIONS,
    Candidate,
    CandidateStatus,
    Condition,
    Measurement,
    Prediction,
    Provenance,
    check_transition,
)


def test_lifecycle_follows_design() -> None:
    path = ["generated", "scored", "selected", "evaluated"]
    for current, new in zip(path, path[1:], strict=False):
        check_transition(current, new)
    check_transition("generated", "rejected")
    check_transition("selected", "failed")


@pytest.mark.parametrize(("current", "new"), [("generated", "evaluated"), ("evaluated", "generated"), ("rejected", "scored"), ("imported", "selected")])
def test_forbidden_transitions_name_both_ends_and_the_allowed_ones(current: str, new: str) -> None:
    with pytest.raises(StatusTransitionError, match=f"from '{current}' to '{new}'; allowed"):
        check_transition(current, new)


def test_every_status_has_a_transition_entry() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(CandidateStatus)


def test_condition_validates_elements_and_values() -> None:
    condition = Condition(composition={"O": 3, "Sr": 1, "Ti": 1}, chemical_system=("Ti", "O", "Sr"), properties={"band_gap": 2.0})
    assert list(condition.composition) == ["O", "Ti", "Sr"]  # ordered by atomic number
    assert condition.chemical_system == ("O", "Sr", "Ti")
    with pytest.raises(ValidationError, match="Xx"):
        Condition(composition={"Xx": 1})
    with pytest.raises(ValidationError, match="finite"):
        Condition(properties={"band_gap": float("nan")})
    with pytest.raises(ValidationError, match="outside chemical_system"):
        Condition(composition={"Fe": 1}, chemical_system=("O",))
    with pytest.raises(ValidationError, match="extra"):
        Condition(guidance=2.0)  # type: ignore[call-arg]


def test_condition_json_round_trip() -> None:
    condition = Condition(chemical_system=("Sr", "Ti", "O"), embedding=(0.1, -0.2), guidance_scale=2.5, num_atoms=5)
    assert Condition.model_validate_json(condition.model_dump_json()) == condition


def test_measurement_ok_needs_a_finite_value() -> None:
    Measurement(oracle="chgnet", property="energy_per_atom", value=-3.2, units="eV/atom")
    Measurement(oracle="chgnet", property="energy_per_atom", value=None, status="failed", reason="relaxation diverged")
    with pytest.raises(ValidationError, match="finite value"):
        Measurement(oracle="chgnet", property="energy_per_atom", value=None)


def test_measurement_unconverged_and_details() -> None:
    kept = Measurement(oracle="chgnet", property="energy_per_atom", value=-3.1, status="unconverged", reason="max_steps")
    assert kept.value == -3.1 and not kept.usable
    assert Measurement(oracle="chgnet", property="energy_per_atom", value=None, status="unconverged").value is None
    assert Measurement(oracle="chgnet", property="energy_per_atom", value=-3.1).usable
    with pytest.raises(ValidationError, match="'unconverged' needs a finite value or None"):
        Measurement(oracle="chgnet", property="energy_per_atom", value=float("nan"), status="unconverged")
    details = {"basis": {"elements": 2}, "decomposition": [{"formula": "CaO", "fraction": 0.5}]}
    m = Measurement(oracle="chgnet", property="e_above_hull", value=0.0, details=details)
    assert Measurement.model_validate_json(m.model_dump_json()) == m
    assert Measurement(oracle="o", property="p", value=1.0).details == {}
    with pytest.raises(ValidationError, match="details of measurement chgnet/e_above_hull must be JSON-able"):
        Measurement(oracle="chgnet", property="e_above_hull", value=0.0, details={"x": object()})
    with pytest.raises(ValidationError, match="JSON-able"):
        Measurement(oracle="chgnet", property="e_above_hull", value=0.0, details={"x": float("inf")})


def test_prediction_shapes_are_checked() -> None:
    prediction = Prediction(mean=[[1.0, 2.0]], std=[[0.1, 0.2]], properties=("a", "b"), units=("eV", "eV/atom"))
    assert prediction.row(0) == {"a": (1.0, 0.1, "eV"), "b": (2.0, 0.2, "eV/atom")}
    with pytest.raises(ValueError, match="same shape"):
        Prediction(mean=np.zeros((2, 1)), std=np.zeros((1, 1)), properties=("a",), units=("eV",))
    with pytest.raises(ValueError, match="property names"):
        Prediction(mean=np.zeros((2, 2)), std=np.zeros((2, 2)), properties=("a",), units=("eV",))
    with pytest.raises(ValueError, match="non-negative"):
        Prediction(mean=np.zeros((1, 1)), std=-np.ones((1, 1)), properties=("a",), units=("eV",))


def test_candidate_id_is_the_canonical_hash() -> None:
    crystal = Crystal(np.eye(3) * 4.0, [[0, 0, 0], [0.5, 0.5, 0.5]], [11, 17])
    shifted = Crystal(np.eye(3) * 4.0, [[0.5, 0.5, 0.5], [0, 0, 0]], [11, 17])
    provenance = Provenance(component="test", seed=0)
    a, b = Candidate.from_crystals([crystal, shifted], provenance)
    assert a.id == b.id == crystal.canonical_hash()
    assert a.status is CandidateStatus.GENERATED
