"""The real CHGNet 0.3.0 (weights from the chgnet wheel): relaxation, failures, bulk modulus of Si."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from ase.build import bulk

from crystaloop.data.crystal import Crystal
from crystaloop.surrogates.eos import bulk_modulus
from crystaloop.surrogates.oracles import CHGNetOracle, OracleCache, RelaxConfig

pytest.importorskip("chgnet")
pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad:UserWarning")


@pytest.fixture(scope="module")
def chgnet() -> CHGNetOracle:
    """One CHGNet oracle (one loaded model) for the module; few steps keep it quick."""
    return CHGNetOracle(relax=RelaxConfig(fmax=0.05, max_steps=30), cache=OracleCache("sqlite://"), threads=1)


def _strained_silicon() -> Crystal:
    atoms = bulk("Si", "diamond", a=5.60)  # +3 % on the experimental 5.43 Å
    atoms.positions[1] += (0.05, -0.03, 0.02)
    return Crystal.from_ase(atoms)


def _overlapping() -> Crystal:
    return Crystal.from_cartesian(np.eye(3) * 5.0, [[0.0, 0.0, 0.0], [0.1, 0.0, 0.0]], [14, 14])


@pytest.mark.slow  # the first CHGNet test pays torch's import and the model load (~5 s)
def test_chgnet_relaxation_lowers_energy_and_forces(chgnet: CHGNetOracle) -> None:
    strained = _strained_silicon()
    (result,) = chgnet.relax([strained])
    assert result.status == "ok", result.reason
    assert result.final is not None and result.final.n_sites == 2
    assert result.steps > 0
    assert result.energy_per_atom < result.initial_energy_per_atom
    assert result.fmax < result.initial_fmax
    assert -6.0 < result.energy_per_atom < -4.5  # CHGNet (MPtrj) silicon is about -5.4 eV/atom
    assert result.final.volume < strained.volume


@pytest.mark.slow
def test_chgnet_batch_with_overlapping_atoms(chgnet: CHGNetOracle) -> None:
    bad, good = chgnet.evaluate([_overlapping(), Crystal.from_ase(bulk("Si", "diamond", a=5.45))])
    assert bad.status == "failed" and "overlapping atoms" in bad.reason and bad.value is None
    assert good.status == "ok" and good.oracle == "chgnet-0.3.0" and good.units == "eV/atom"


@pytest.mark.slow
def test_chgnet_silicon_bulk_modulus_is_plausible(chgnet: CHGNetOracle) -> None:
    """CHGNet 0.3.0 gives about 70 GPa for diamond Si (experiment ~98 GPa, PBE ~88 GPa): MPtrj
    potentials are known to be soft, so the bound is broad."""
    measurement = bulk_modulus(Crystal.from_ase(bulk("Si", "diamond", a=5.43)), chgnet, relax_first=False)
    assert measurement.status == "ok", measurement.reason
    assert 50.0 < measurement.value < 120.0


def test_import_loads_no_model() -> None:
    code = (
        "import sys, crystaloop.surrogates.oracles as o, crystaloop.surrogates.hull, crystaloop.surrogates.eos\n"
        "oracle = o.make_oracle('chgnet')\n"
        "print(sorted(m for m in ('torch', 'chgnet', 'sevenn') if m in sys.modules), oracle.calculators_made, oracle.shared_model.loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[] 0 False"


@pytest.mark.slow
def test_chgnet_zinc_sulfide_hull_uses_the_s8_reference(chgnet: CHGNetOracle) -> None:
    """Zincblende ZnS against CHGNet's own Zn and S₈ references: on the hull, with a formation
    energy of the right sign and size (experiment: −1.07 eV/atom, −206 kJ/mol per ZnS)."""
    from crystaloop.surrogates.hull import EnergyAboveHull, delta_test_crystal

    hull = EnergyAboveHull(chgnet)
    zns = Crystal.from_ase(bulk("ZnS", "zincblende", a=5.41))
    (measurement,) = hull.e_above_hull([zns])
    assert measurement.status == "ok", measurement.reason
    # the zincblende prototype phase is the same crystal relaxed from another start: within noise
    assert measurement.value < 2e-3 and measurement.details["coverage"] == "prototype"
    assert any(d["source"] == "prototype:zincblende" for d in measurement.details["decomposition"])
    (relaxed,) = chgnet.relax([zns])  # cached: the same relaxation the hull used
    zinc, sulfur = hull.reference("Zn"), hull.reference("S")
    assert sulfur.final.composition == {"S": 8}
    formation = relaxed.energy_per_atom - 0.5 * (zinc.energy_per_atom + sulfur.energy_per_atom)
    assert -1.6 < formation < -0.5
    # the ring is a far better sulfur reference than the one-atom cell of the Δ-test collection
    simple_cell = hull.relax_reference(delta_test_crystal("S"), fixed_cell=False)
    assert sulfur.energy_per_atom < simple_cell.energy_per_atom - 0.3
