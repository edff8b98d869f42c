"""ASEOracle around ASE's EMT and deliberately broken calculators: relaxation, failures, timeouts."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.calculator import Calculator, CalculatorSetupError, all_changes
from ase.calculators.emt import EMT
from pydantic import ValidationError

from crystaloop.data.crystal import Crystal
from crystaloop.data.errors import OracleError
from crystaloop.surrogates.oracles import ASEOracle, Oracle, Relaxation, RelaxConfig


class FakeCalculator(Calculator):
    """Returns a fixed energy (possibly NaN or huge) with zero forces, or raises ``error``."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, energy_per_atom: float = -1.0, error: Exception | None = None) -> None:
        super().__init__()
        self.energy_per_atom = energy_per_atom
        self.error = error

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        if self.error is not None:
            raise self.error
        energy = self.energy_per_atom * len(self.atoms)
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": np.full((len(self.atoms), 3), 0.3),
            "stress": np.zeros(6),
        }


def _cu(a: float = 3.6) -> Crystal:
    return Crystal.from_ase(bulk("Cu", "fcc", a=a))


def _al(a: float = 4.05) -> Crystal:
    return Crystal.from_ase(bulk("Al", "fcc", a=a, cubic=True))


def _overlapping() -> Crystal:
    """Two Cu atoms 0.1 Å apart: most calculators return garbage instead of raising."""
    return Crystal.from_cartesian(np.eye(3) * 4.0, [[0.0, 0.0, 0.0], [0.1, 0.0, 0.0]], [29, 29])


def _emt_oracle(**kwargs) -> ASEOracle:
    return ASEOracle("emt", EMT, **kwargs)


def test_relax_lowers_energy_and_forces_of_strained_copper() -> None:
    oracle = _emt_oracle()
    strained = _cu(3.85)
    (result,) = oracle.relax([strained])
    assert isinstance(result, Relaxation)
    assert result.status == "ok" and result.converged, result.reason
    assert result.final is not None and result.final.n_sites == 1
    assert result.energy_per_atom < result.initial_energy_per_atom
    assert result.fmax < result.initial_fmax and result.fmax < oracle.relax_config.fmax
    assert result.final.volume < strained.volume  # EMT copper is near a = 3.59 Å
    assert result.initial_hash == strained.canonical_hash()


def test_evaluate_gives_energy_measurements_for_cu_and_al() -> None:
    oracle = _emt_oracle()
    measurements = oracle.evaluate([_cu(), _al()])
    assert [m.property for m in measurements] == ["energy_per_atom", "energy_per_atom"]
    assert all(m.status == "ok" and m.units == "eV/atom" and m.oracle == "emt" for m in measurements)
    assert all(abs(m.value) < 0.1 for m in measurements)  # EMT energies are near zero for fcc metals
    assert isinstance(oracle, Oracle)


def test_single_point_does_not_relax() -> None:
    oracle = _emt_oracle()
    (strained,) = oracle.single_point([_cu(3.85)])
    (relaxed,) = oracle.evaluate([_cu(3.85)])
    assert strained.status == "ok" and strained.value > relaxed.value


def test_overlapping_atoms_fail_without_stopping_the_batch() -> None:
    oracle = _emt_oracle()
    bad, good = oracle.evaluate([_overlapping(), _cu()])
    assert bad.status == "failed" and bad.value is None
    assert "overlapping atoms" in bad.reason and "0.100 Å" in bad.reason
    assert good.status == "ok"


def test_tiny_timeout_fails_with_timed_out() -> None:
    oracle = _emt_oracle(relax=RelaxConfig(timeout_s=1e-6))
    (result,) = oracle.relax([_cu(3.85)])
    assert result.status == "failed" and "timed out" in result.reason and result.final is None


@pytest.mark.parametrize(
    ("energy", "expected"),
    [(float("nan"), "not finite"), (float("inf"), "not finite"), (-500.0, "exploded")],
)
def test_nan_and_exploding_energies_fail(energy: float, expected: str) -> None:
    oracle = ASEOracle("fake", lambda: FakeCalculator(energy))
    relaxed, single = oracle.evaluate([_cu()])[0], oracle.single_point([_cu()])[0]
    for measurement in (relaxed, single):
        assert measurement.status == "failed" and expected in measurement.reason


def test_calculator_exception_fails_only_that_structure() -> None:
    calls = []

    class Picky(EMT):
        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            calls.append(1)
            if atoms is not None and 13 in atoms.numbers:
                raise RuntimeError("SCF did not converge")
            super().calculate(atoms, properties, system_changes)

    oracle = ASEOracle("picky", Picky)
    al, cu = oracle.evaluate([_al(), _cu()])
    assert al.status == "failed" and "RuntimeError: SCF did not converge" in al.reason
    assert cu.status == "ok"


def test_infrastructure_errors_raise() -> None:
    broken = ASEOracle("broken", lambda: FakeCalculator(error=CalculatorSetupError("no pw.x on PATH")))
    with pytest.raises(OracleError, match="no pw.x on PATH"):
        broken.evaluate([_cu()])

    def factory():
        raise FileNotFoundError("weights.pt")

    with pytest.raises(OracleError, match="could not create the calculator.*weights.pt"):
        ASEOracle("missing", factory).evaluate([_cu()])


def test_calculator_is_created_lazily_once() -> None:
    made = []

    def factory():
        made.append(1)
        return EMT()

    oracle = ASEOracle("emt", factory)
    assert made == []
    oracle.evaluate([_cu(), _al()])
    oracle.single_point([_cu(3.7)])
    assert made == [1] and oracle.calculators_made == 1


def test_volume_change_and_unconverged_runs() -> None:
    (blown,) = _emt_oracle(relax=RelaxConfig(max_volume_factor=1.001)).relax([_cu(3.85)])
    assert blown.status == "failed" and "volume changed by a factor" in blown.reason
    (short,) = _emt_oracle(relax=RelaxConfig(max_steps=1, fmax=1e-4)).relax([_cu(3.85)])
    assert short.status == "unconverged" and not short.converged and short.steps == 1
    assert short.reason.startswith("not converged after 1 steps")
    (frozen,) = _emt_oracle(relax=RelaxConfig(max_steps=0)).relax([_cu(3.85)])
    assert frozen.status == "ok" and frozen.steps == 0
    assert frozen.energy_per_atom == pytest.approx(frozen.initial_energy_per_atom)


def _distorted_cu() -> Crystal:
    """A conventional fcc Cu cell sheared and stretched well away from its minimum."""
    atoms = bulk("Cu", "fcc", a=3.9, cubic=True)
    atoms.set_cell(np.array(atoms.cell) @ np.array([[1.0, 0.08, 0.0], [0.0, 1.05, 0.0], [0.0, 0.0, 0.96]]), scale_atoms=True)
    atoms.positions[0] += (0.08, -0.05, 0.03)
    return Crystal.from_ase(atoms)


def test_step_cap_gives_unconverged_with_its_energy_kept() -> None:
    crystal = _distorted_cu()
    (capped,) = _emt_oracle(relax=RelaxConfig(max_steps=2, fmax=0.01)).relax([crystal])
    assert capped.status == "unconverged" and capped.steps == 2 and not capped.converged
    assert capped.final is not None and np.isfinite(capped.energy_per_atom)
    assert capped.energy_per_atom < capped.initial_energy_per_atom
    assert "max_steps 2" in capped.reason and "fmax" in capped.reason
    measurement = capped.to_measurement("emt")
    assert measurement.status == "unconverged" and measurement.value == capped.energy_per_atom
    assert not measurement.usable
    (done,) = _emt_oracle(relax=RelaxConfig(max_steps=500, fmax=0.05)).relax([crystal])
    assert done.status == "ok" and done.converged and done.to_measurement("emt").usable
    (single,) = _emt_oracle(relax=RelaxConfig(max_steps=0, fmax=1e-6)).relax([crystal])
    assert single.status == "ok" and single.to_measurement("emt").status == "ok"


def test_cell_strain_beyond_the_limit_fails() -> None:
    crystal = _distorted_cu()
    config = RelaxConfig(max_steps=500, fmax=0.05)
    (ok,) = _emt_oracle(relax=config).relax([crystal])
    assert ok.status == "ok"
    strict = config.model_copy(update={"max_cell_strain": 0.01})
    (failed,) = _emt_oracle(relax=strict).relax([crystal])
    assert failed.status == "failed" and failed.final is None and failed.energy_per_atom is None
    assert "Green-Lagrange strain" in failed.reason and "exceeds max_cell_strain 0.01" in failed.reason
    with pytest.raises(ValidationError):
        RelaxConfig(max_cell_strain=0)


def test_max_cell_strain_is_the_largest_principal_green_lagrange_strain() -> None:
    from crystaloop.surrogates.oracles.relax import max_cell_strain

    cell = np.array([[3.0, 0.0, 0.0], [1.0, 3.0, 0.0], [0.0, 0.5, 4.0]])
    assert max_cell_strain(cell, cell) == pytest.approx(0.0, abs=1e-12)
    rotation = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert max_cell_strain(cell, cell @ rotation) == pytest.approx(0.0, abs=1e-12)  # rotations strain nothing
    stretched = cell @ np.diag([1.0, 1.0, np.sqrt(2.0)])
    assert max_cell_strain(cell, stretched) == pytest.approx(0.5)
    assert max_cell_strain(cell, cell * 0.5) == pytest.approx(0.375)


def test_fixed_cell_relaxation_keeps_the_cell() -> None:
    crystal = _cu(3.85)
    (result,) = _emt_oracle(relax=RelaxConfig(relax_cell=False, optimizer="BFGS")).relax([crystal])
    assert result.status == "ok"
    np.testing.assert_allclose(result.final.lattice, crystal.lattice, atol=1e-9)


def test_batch_with_progress_bar_and_duplicates() -> None:
    crystals = [_cu(3.55 + 0.02 * i) for i in range(6)] + [_cu(3.55)]
    results = _emt_oracle(progress_threshold=2).relax(crystals)
    assert len(results) == 7 and all(r.status == "ok" for r in results)
    assert results[0] is results[-1]  # the duplicate was computed once


def test_relax_config_is_strict() -> None:
    with pytest.raises(ValidationError):
        RelaxConfig(fmax_ev=0.1)
    with pytest.raises(ValidationError):
        RelaxConfig(optimizer="LBFGS")
    with pytest.raises(ValidationError):
        RelaxConfig(timeout_s=0)
