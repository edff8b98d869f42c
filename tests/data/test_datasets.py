"""Dataset readers, splits and the parse cache on real shipped data and small fixtures."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import numpy as np
import pytest

from crystaloop.data.datasets import (
    SHIPPED_DATASETS,
    detect_format,
    load_dataset,
    parse_fractions,
    shipped_path,
    split_indices,
    write_split_csv,
)
from crystaloop.data.datasets.cache import cache_dir
from crystaloop.data.errors import DatasetError, UnknownComponentError


def test_shipped_files_exist_and_are_gzip() -> None:
    for name, splits in SHIPPED_DATASETS.items():
        for split in splits:
            path = shipped_path(name, split)
            with gzip.open(path, "rt") as handle:
                assert handle.readline().startswith(",material_id,cif")


def test_perov5_reader_reads_properties() -> None:
    dataset = load_dataset("perov_5/val", max_rows=40)
    assert len(dataset) == 40 and not dataset.errors
    assert set(dataset.properties) == {"heat_all", "heat_ref", "dir_gap", "ind_gap"}
    assert all(c.n_sites == 5 for c in dataset.crystals)
    assert dataset.units["heat_ref"] == "eV"
    assert np.isfinite(dataset.properties["heat_ref"]).all()


def test_carbon24_reader() -> None:
    dataset = load_dataset("carbon_24/val", max_rows=30)
    assert len(dataset) == 30
    assert set(dataset.properties) == {"energy_per_atom"}
    assert all(set(c.elements) == {"C"} for c in dataset.crystals)
    assert all(6 <= c.n_sites <= 24 for c in dataset.crystals)


def test_mp20_layout_reads_good_rows_and_reports_bad_ones(fixtures_dir: Path) -> None:
    dataset = load_dataset(fixtures_dir / "mp20_layout.csv", use_cache=False)
    assert dataset.ids == ["fixture-0", "fixture-1", "fixture-2"]
    assert set(dataset.properties) == {"formation_energy_per_atom", "band_gap", "e_above_hull"}
    assert dataset.units == {"formation_energy_per_atom": "eV/atom", "band_gap": "eV", "e_above_hull": "eV/atom"}
    problems = {e.source: e.problem for e in dataset.errors}
    assert set(problems) == {"mp20_layout.csv row 4 (material_id=fixture-bad-cif)", "mp20_layout.csv row 5 (material_id=fixture-bad-property)"}
    assert "malformed CIF" in problems["mp20_layout.csv row 4 (material_id=fixture-bad-cif)"]
    assert "'band_gap' is not a number: 'not-a-number'" in problems["mp20_layout.csv row 5 (material_id=fixture-bad-property)"]


def test_structure_folder_and_extxyz_agree(fixtures_dir: Path) -> None:
    folder = load_dataset(fixtures_dir / "structures", use_cache=False)
    frames = load_dataset(fixtures_dir / "structures.extxyz", use_cache=False)
    assert folder.ids == frames.ids == ["NaCl", "POSCAR_diamond", "SrTiO3"]
    assert [c.canonical_hash() for c in folder.crystals] == [c.canonical_hash() for c in frames.crystals]
    np.testing.assert_allclose(frames.properties["energy_per_atom"], [-8.0, -2.0, -5.0])
    # The symmetrised SrTiO3 CIF expands to the full 5-site cell.
    assert folder.crystals[2].composition == {"O": 3, "Ti": 1, "Sr": 1}


def test_format_detection_names_accepted_forms(tmp_path: Path) -> None:
    assert detect_format(tmp_path) == "structure-folder"
    assert detect_format(Path("x.csv.gz")) == "cdvae-csv"
    assert detect_format(Path("x.extxyz")) == "extxyz"
    with pytest.raises(DatasetError, match="accepted: a CDVAE-style"):
        detect_format(Path("x.json"))
    with pytest.raises(DatasetError, match="shipped: perov_5/train"):
        load_dataset("no_such_dataset")
    with pytest.raises(UnknownComponentError, match="allowed: train, val"):
        shipped_path("perov_5", "test")


def test_csv_without_cif_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("material_id,energy\nx,1.0\n")
    with pytest.raises(DatasetError, match="no 'cif' column"):
        load_dataset(path)


def test_cache_round_trip_is_exact_and_fast() -> None:
    cold_start = time.perf_counter()
    cold = load_dataset("perov_5/val", max_rows=120)
    cold_seconds = time.perf_counter() - cold_start
    warm_start = time.perf_counter()
    warm = load_dataset("perov_5/val", max_rows=120)
    warm_seconds = time.perf_counter() - warm_start
    assert cold.content_hash == warm.content_hash and any(cache_dir().glob(f"{cold.content_hash}.npz"))
    assert warm.ids == cold.ids and warm.sources == cold.sources
    for a, b in zip(cold.crystals, warm.crystals, strict=True):
        np.testing.assert_array_equal(a.lattice, b.lattice)
        np.testing.assert_array_equal(a.frac_coords, b.frac_coords)
        np.testing.assert_array_equal(a.numbers, b.numbers)
    for key in cold.properties:
        np.testing.assert_array_equal(cold.properties[key], warm.properties[key])
    assert warm_seconds < cold_seconds  # the cache is used; absolute speed lives in benchmarks/


def test_cache_key_follows_content(tmp_path: Path, fixtures_dir: Path) -> None:
    target = tmp_path / "data.csv"
    target.write_bytes((fixtures_dir / "mp20_layout.csv").read_bytes())
    first = load_dataset(target)
    target.write_text(target.read_text().replace("fixture-0", "fixture-zero"))
    second = load_dataset(target)
    assert first.content_hash != second.content_hash
    assert second.ids[0] == "fixture-zero"


def test_corrupt_cache_entry_is_ignored() -> None:
    dataset = load_dataset("carbon_24/val", max_rows=5)
    entry = cache_dir() / f"{dataset.content_hash}.npz"
    entry.write_bytes(b"not an npz")
    again = load_dataset("carbon_24/val", max_rows=5)
    assert len(again) == 5


def test_split_indices_are_deterministic_disjoint_and_complete() -> None:
    parts = split_indices(1001, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=3)
    assert parts.keys() == {"train", "val", "test"}
    joined = np.concatenate(list(parts.values()))
    assert sorted(joined.tolist()) == list(range(1001))
    assert [len(p) for p in parts.values()] == [801, 100, 100]
    again = split_indices(1001, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=3)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)
    other = split_indices(1001, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=4)
    assert not np.array_equal(parts["val"], other["val"])


@pytest.mark.parametrize("text", ["train=0.8,val=0.3", "train", "train=x", "=0.5,val=0.5"])
def test_bad_fractions_are_refused(text: str) -> None:
    with pytest.raises(DatasetError):
        parse_fractions(text)


def test_split_csv_is_deterministic_and_verbatim(tmp_path: Path) -> None:
    import csv

    source = shipped_path("perov_5", "val")
    first = write_split_csv(source, tmp_path / "a", parse_fractions("train=0.7,val=0.3"), seed=5)
    second = write_split_csv(source, tmp_path / "b", parse_fractions("train=0.7,val=0.3"), seed=5)
    assert all(first[k].read_bytes() == second[k].read_bytes() for k in first)

    def rows(path: Path) -> list[dict[str, str]]:
        with gzip.open(path, "rt", newline="") as handle:
            return list(csv.DictReader(handle))

    original = rows(source)
    parts = [rows(first["train"]), rows(first["val"])]
    assert [len(p) for p in parts] == [530, 227]
    key = lambda r: r[""]  # noqa: E731
    assert sorted(parts[0] + parts[1], key=key) == sorted(original, key=key)  # every field verbatim


SHARED_SOURCE = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.mark.skipif(not SHARED_SOURCE.exists(), reason=f"source CSVs not at {SHARED_SOURCE}")
@pytest.mark.parametrize("name", ["perov_5", "carbon_24"])
def test_shipped_splits_reproduce_from_source(tmp_path: Path, name: str) -> None:
    """The shipped files are byte for byte what data/shipped/ATTRIBUTION.md says made them."""
    written = write_split_csv(SHARED_SOURCE / name / "val.csv", tmp_path, parse_fractions("train=0.8,val=0.2"), seed=0)
    for split, path in written.items():
        assert path.read_bytes() == shipped_path(name, split).read_bytes(), f"{name}/{split}"
