"""The broken-input corpus: every broken fixture is refused clearly, good rows still import."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets import load_dataset, parse_structure_text
from crystaloop.data.errors import InvalidStructureError

BROKEN = Path(__file__).resolve().parents[1] / "fixtures" / "broken"

# file → words the error must contain (what is wrong, in the user's terms); one table for this
# test and tests/test_cli_broken_inputs.py
REASONS = json.loads((BROKEN.parent / "broken_reasons.json").read_text())
# inputs that are whole datasets rather than one structure (tests/test_cli_broken_inputs.py)
DATASET_FILES = {"empty.csv", "header_only.csv"}
EXPECTED = {name: words for name, words in REASONS.items() if name not in DATASET_FILES}


def test_corpus_is_complete_and_documented() -> None:
    files = sorted(p.name for p in BROKEN.iterdir())
    assert files == sorted([*EXPECTED, *DATASET_FILES])
    for name in EXPECTED:
        text = (BROKEN / name).read_bytes()
        assert name in ("empty.cif", "binary.cif") or text.startswith(b"# why:"), f"{name} must say why it exists"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_broken_file_gives_a_clear_error(name: str) -> None:
    fmt = "poscar" if name.startswith("POSCAR") else "cif"
    with pytest.raises(InvalidStructureError) as info:
        parse_structure_text((BROKEN / name).read_text(errors="replace"), fmt)
    assert EXPECTED[name] in str(info.value)


def test_a_10000_atom_cif_is_refused_before_parsing() -> None:
    """Issue 22: it took about 60 s to be rejected (pymatgen parses, then the site limit fires)."""
    import time

    header = ["data_big", *[f"_cell_length_{a} 100.0" for a in "abc"], *[f"_cell_angle_{a} 90" for a in ("alpha", "beta", "gamma")],
              "loop_", "_atom_site_type_symbol", "_atom_site_label", "_atom_site_fract_x", "_atom_site_fract_y", "_atom_site_fract_z"]
    sites = [f"Ar Ar{i} {(i % 22) / 22:.4f} {(i // 22 % 22) / 22:.4f} {(i // 484) / 22:.4f}" for i in range(10_000)]
    start = time.perf_counter()
    with pytest.raises(InvalidStructureError, match="10000 sites, more than the limit of 1000"):
        parse_structure_text("\n".join([*header, *sites]), "cif")
    assert time.perf_counter() - start < 1.0


def test_a_left_handed_basis_is_re_oriented_keeping_every_atom(fixtures_dir: Path) -> None:
    import numpy as np

    text = (fixtures_dir / "structures" / "POSCAR_diamond").read_text().splitlines()
    right = parse_structure_text("\n".join(text), "poscar")
    text[2] = " ".join(str(-float(v)) for v in text[2].split())  # negate a_1: det < 0
    read = parse_structure_text("\n".join(text), "poscar")
    raw = Crystal(np.array(right.lattice) * np.array([[-1.0], [1.0], [1.0]]), right.frac_coords, right.numbers)
    assert np.linalg.det(raw.lattice) < 0 < np.linalg.det(read.lattice)
    assert np.allclose(read.lattice, -np.array(raw.lattice)) and read == raw  # same atoms, one id
    shift = np.linalg.solve(np.array(raw.lattice).T, (read.cart_coords - raw.cart_coords).T).T
    assert np.allclose(shift, np.round(shift), atol=1e-9)  # each atom moved by a lattice vector at most
    assert right.right_handed() is right


def test_folder_import_names_every_bad_file_and_keeps_good_ones(tmp_path: Path, fixtures_dir: Path) -> None:
    for source in [*(p for p in BROKEN.iterdir() if p.name not in DATASET_FILES), *(fixtures_dir / "structures").iterdir()]:
        shutil.copy(source, tmp_path / source.name)
    dataset = load_dataset(tmp_path, use_cache=False)
    assert sorted(dataset.ids) == ["NaCl", "POSCAR_diamond", "SrTiO3"]
    reported = {e.source: e.problem for e in dataset.errors}
    assert set(reported) == set(EXPECTED)
    for name, words in EXPECTED.items():
        assert words in reported[name], f"{name}: {reported[name]}"
