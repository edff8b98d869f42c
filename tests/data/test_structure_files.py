"""Every structure of a CIF / extxyz / JSON file is read, and what crystaloop writes reads back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase.io import read

from crystaloop.data.datasets import load_dataset
from crystaloop.data.datasets.files import write_structure_file
from crystaloop.data.matching import structure_matcher


@pytest.fixture
def three(fixtures_dir: Path):
    return load_dataset(fixtures_dir / "structures", use_cache=False)


def _same(a, b) -> bool:
    return structure_matcher().fit(a.to_pymatgen(), b.to_pymatgen())


@pytest.mark.parametrize("suffix", [".cif", ".json", ".extxyz"])
def test_round_trip_keeps_every_structure(three, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"out{suffix}"
    info = [{"generator": "diffusion", "checkpoint": "abc123", "seed": 7, "condition": {"composition": {"Na": 1}}}] * 3
    write_structure_file(path, three.crystals, ids=three.ids, info=info)
    back = load_dataset(path, use_cache=False)
    assert not back.errors
    assert back.ids == three.ids
    assert len(back) == 3 and all(_same(a, b) for a, b in zip(three.crystals, back.crystals, strict=True))


def test_cif_is_symmetrised_with_provenance(three, tmp_path: Path) -> None:
    path = tmp_path / "out.cif"
    write_structure_file(path, three.crystals, ids=three.ids, info=[{"generator": "diffusion", "checkpoint": "abc123", "seed": 7}] * 3)
    text = path.read_text()
    assert text.count("data_") == 3
    assert "_symmetry_space_group_name_H-M   Fm-3m" in text and "Pm-3m" in text
    assert "# generator: diffusion" in text and "# checkpoint: abc123" in text and "# seed: 7" in text
    assert "# symmetry: spglib symprec=0.1" in text


def test_extxyz_carries_energy_forces_stress_and_status(three, tmp_path: Path) -> None:
    path = tmp_path / "relaxed.extxyz"
    results = [{"energy": -1.5 * (i + 1), "forces": np.full((c.n_sites, 3), 0.01 * i), "stress": np.arange(6.0) * i}
               for i, c in enumerate(three.crystals)]
    write_structure_file(path, three.crystals, ids=three.ids, info=[{"status": "ok", "steps": 3}] * 3, results=results)
    frames = read(str(path), index=":")
    assert len(frames) == 3
    for i, atoms in enumerate(frames):
        assert atoms.info["status"] == "ok" and atoms.info["crystaloop_id"] == three.ids[i]
        assert atoms.get_potential_energy() == pytest.approx(-1.5 * (i + 1))
        assert atoms.get_forces() == pytest.approx(np.full((len(atoms), 3), 0.01 * i))
        assert atoms.get_stress() == pytest.approx(np.arange(6.0) * i)


def test_json_is_pymatgen_structure_dicts(three, tmp_path: Path) -> None:
    from pymatgen.core import Structure

    path = tmp_path / "out.json"
    write_structure_file(path, three.crystals, ids=three.ids, info=[{"seed": 1}] * 3)
    rows = json.loads(path.read_text())
    structures = [Structure.from_dict(row) for row in rows]
    assert [s.composition.reduced_formula for s in structures] == ["NaCl", "C", "SrTiO3"]
    assert rows[0]["properties"]["crystaloop"]["id"] == "NaCl"


def test_multi_block_cif_reads_every_block_and_reports_bad_ones(fixtures_dir: Path, tmp_path: Path) -> None:
    blocks = [(fixtures_dir / "structures" / name).read_text() for name in ("NaCl.cif", "SrTiO3.cif")]
    blocks.append((fixtures_dir / "broken" / "overlapping.cif").read_text())
    path = tmp_path / "many.cif"
    path.write_text("\n".join(blocks))
    dataset = load_dataset(path, use_cache=False)
    assert sorted(c.reduced_formula for c in dataset.crystals) == ["NaCl", "SrTiO3"]
    assert len(dataset.errors) == 1 and "structure 3" in dataset.errors[0].source


def test_json_reads_optimade_documents_and_older_rows(three, tmp_path: Path) -> None:
    crystal = three.crystals[2]
    document = {"id": "x-1", "type": "structures", "attributes": {
        "lattice_vectors": crystal.lattice.tolist(), "cartesian_site_positions": crystal.cart_coords.tolist(),
        "species_at_sites": crystal.symbols, "species": [{"name": s, "chemical_symbols": [s], "concentration": [1.0]} for s in set(crystal.symbols)]}}
    path = tmp_path / "optimade.json"
    path.write_text(json.dumps({"data": [document], "meta": {}}))
    back = load_dataset(path, use_cache=False)
    assert back.ids == ["x-1"] and _same(back.crystals[0], crystal)
    older = tmp_path / "older.json"
    older.write_text(json.dumps([{"id": "abc", "formula": "SrTiO3", "crystal": crystal.to_dict()}, {"id": "bad", "crystal": {"lattice": []}}]))
    back = load_dataset(older, use_cache=False)
    assert back.ids == ["abc"] and len(back.errors) == 1


def test_cif_metadata_blocks_are_not_bad_structures(fixtures_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "with_global.cif"
    path.write_text("data_global\n_journal_name_full 'Some journal'\n_publ_section_title 'A title'\n\n"
                    + (fixtures_dir / "structures" / "SrTiO3.cif").read_text())
    dataset = load_dataset(path, use_cache=False)
    assert [c.reduced_formula for c in dataset.crystals] == ["SrTiO3"] and not dataset.errors
    assert dataset.ids == ["with_global"]


def test_a_nearly_symmetric_cell_is_written_so_it_reads_back_with_its_own_atoms(tmp_path) -> None:
    """perov_5/val row 0 (CdCuN3) is only nearly Pm-3m at 0.1 Å: written with exact operations it
    read back as Cd5Cu6N5. Every written block must parse to the crystal's own sites."""
    from pymatgen.core import Structure

    for i, crystal in enumerate(load_dataset("perov_5/val", max_rows=12).crystals):
        path = tmp_path / f"row{i}.cif"
        write_structure_file(path, [crystal])
        back = Structure.from_file(str(path))
        assert len(back) == crystal.n_sites and {str(el): int(n) for el, n in back.composition.items()} == crystal.composition
