"""The broken-input corpus: every broken fixture is refused clearly, good rows still import."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from crystaloop.data.datasets import load_dataset, parse_structure_text
from crystaloop.data.errors import InvalidStructureError

BROKEN = Path(__file__).resolve().parents[1] / "fixtures" / "broken"

# file → words the error must contain (what is wrong, in the user's terms)
EXPECTED = {
    "malformed.cif": "malformed CIF",
    "overlapping.cif": "overlapping atoms",
    "partial_occupancy.cif": "partial occupancy",
    "nan_coordinate.cif": "NaN",
    "unknown_element.cif": "unknown element 'Xx'",
    "empty.cif": "empty input",
    "huge_cell.cif": "huge cell",
}


def test_corpus_is_complete_and_documented() -> None:
    files = sorted(p.name for p in BROKEN.iterdir())
    assert files == sorted(EXPECTED)
    for name in files:
        text = (BROKEN / name).read_text()
        assert name == "empty.cif" or text.startswith("# why:"), f"{name} must say why it exists"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_broken_file_gives_a_clear_error(name: str) -> None:
    with pytest.raises(InvalidStructureError) as info:
        parse_structure_text((BROKEN / name).read_text(), "cif")
    assert EXPECTED[name] in str(info.value)


def test_folder_import_names_every_bad_file_and_keeps_good_ones(tmp_path: Path, fixtures_dir: Path) -> None:
    for source in [*BROKEN.iterdir(), *(fixtures_dir / "structures").iterdir()]:
        shutil.copy(source, tmp_path / source.name)
    dataset = load_dataset(tmp_path, use_cache=False)
    assert sorted(dataset.ids) == ["NaCl", "POSCAR_diamond", "SrTiO3"]
    reported = {e.source: e.problem for e in dataset.errors}
    assert set(reported) == set(EXPECTED)
    for name, words in EXPECTED.items():
        assert words in reported[name], f"{name}: {reported[name]}"
