"""The robocrys description cache: keyed by canonical hash, resumable, readable without robocrys."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from crystaloop.data.crystal import Crystal
from crystaloop.data.errors import CrystaloopError
from crystaloop.data.testing import change_basis, permute_sites, random_crystal, random_rotation
from crystaloop.multimodal.features import DatasetViews
from crystaloop.multimodal.robocrys_cache import (
    SHIPPED_ROBOCRYS_DIR,
    add_robocrys_variants,
    build_cache,
    cached_description,
    load_cache,
    read_records,
    robocrys_available,
)


class FakeDescriber:
    """Counts its calls; describes by formula and site count, fails on crystals containing Ti."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, crystal: Crystal) -> str:
        self.calls += 1
        if "Ti" in crystal.composition:
            raise ValueError("no titanium today")
        return f"{crystal.reduced_formula} with {crystal.n_sites} sites."


def _crystals(n: int, seed: int = 0, elements: tuple[str, ...] = ("Li", "C", "O")) -> list[Crystal]:
    rng = np.random.default_rng(seed)
    return [random_crystal(rng, n_sites=3 + i % 3, elements=elements) for i in range(n)]


def test_lookup_is_invariant_to_site_order_rotation_and_cell_choice(tmp_path: Path) -> None:
    crystals = _crystals(3)
    path = tmp_path / "cache.jsonl.gz"
    build_cache(crystals, path, describe=FakeDescriber(), progress=False)
    cache = load_cache(path)
    assert len(cache) == 3
    rng = np.random.default_rng(1)
    for crystal in crystals:
        expected = cached_description(crystal, cache)
        assert expected is not None and crystal.reduced_formula in expected
        for moved in (permute_sites(crystal, rng)[0], random_rotation(crystal, rng), change_basis(crystal, rng)):
            assert cached_description(moved, cache) == expected
    assert cached_description(_crystals(1, seed=99, elements=("Na", "Cl"))[0], cache) is None


def test_resume_appends_only_new_structures_and_records_failures(tmp_path: Path) -> None:
    path = tmp_path / "cache.jsonl.gz"
    crystals = _crystals(4) + _crystals(1, seed=5, elements=("Ti", "O"))
    first = FakeDescriber()
    report = build_cache(crystals[:2] + crystals[:1], path, describe=first, progress=False)  # a duplicate
    assert (first.calls, report.described) == (2, 2)
    second = FakeDescriber()
    report = build_cache(crystals, path, describe=second, progress=False)
    assert (second.calls, report.already_cached, report.described, report.failed) == (3, 2, 2, 1)
    records = read_records(path)
    hashes = [r["hash"] for r in records]
    assert len(hashes) == len(set(hashes)) == 5
    failed = [r for r in records if "error" in r]
    assert len(failed) == 1 and "titanium" in failed[0]["error"]
    assert len(load_cache(path)) == 4  # the failure is not a description
    third = FakeDescriber()
    build_cache(crystals, path, describe=third, progress=False)
    assert third.calls == 0  # failures are not retried either
    build_cache(crystals[:1], path, describe=third, resume=False, progress=False)
    assert len(read_records(path)) == 1  # resume=False starts the file anew


def test_a_write_cut_short_loses_only_the_structure_in_progress(tmp_path: Path) -> None:
    path = tmp_path / "cache.jsonl.gz"
    crystals = _crystals(3)
    build_cache(crystals[:2], path, describe=FakeDescriber(), progress=False)
    cut = gzip.compress(json.dumps({"hash": crystals[2].canonical_hash(), "description": "x"}).encode() + b"\n")
    path.write_bytes(path.read_bytes() + cut[: len(cut) // 2])  # a member killed mid-write
    assert len(read_records(path)) == 2
    describer = FakeDescriber()
    build_cache(crystals, path, describe=describer, progress=False)
    assert describer.calls == 1 and len(load_cache(path)) == 3


def test_time_budget_leaves_the_rest_for_a_later_run(tmp_path: Path) -> None:
    path = tmp_path / "cache.jsonl.gz"
    report = build_cache(_crystals(3), path, describe=FakeDescriber(), time_budget_s=1e-9, progress=False)
    assert report.described == 0 and report.remaining == 3
    with pytest.raises(CrystaloopError, match="time_budget_s"):
        build_cache(_crystals(1), path, describe=FakeDescriber(), time_budget_s=0, progress=False)
    with pytest.raises(CrystaloopError, match="no robocrys cache"):
        load_cache(tmp_path / "missing.jsonl.gz")


def test_robocrys_variants_replace_training_variants_only_where_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    import crystaloop.multimodal.text as text

    class FakeMiniLM:
        def __call__(self, texts: list[str]) -> np.ndarray:
            return np.full((len(texts), 7, 384), 7.0, dtype=np.float32)

    monkeypatch.setattr(text, "MiniLMLayerFeatures", FakeMiniLM)
    crystals = _crystals(40)
    texts = [[f"full {i}", f"variant {i}a", f"variant {i}b"] for i in range(40)]
    views = DatasetViews("toy", np.zeros((40, 5), np.float32), texts, np.zeros((40, 3, 7, 384), np.float16))
    assert add_robocrys_variants(views, crystals, {}, seed=0) is views
    cache = {c.canonical_hash(): f"robocrys {i}" for i, c in enumerate(crystals[:20])}
    mixed = add_robocrys_variants(views, crystals, cache, seed=0)
    assert [t[0] for t in mixed.texts] == [t[0] for t in texts]  # the full descriptions stay
    assert mixed.texts[20:] == texts[20:] and not mixed.text_features[20:].any()  # uncached rows unchanged
    swapped = [(i, j) for i in range(20) for j in (1, 2) if mixed.texts[i][j] == f"robocrys {i}"]
    assert 10 < len(swapped) < 30  # about half of the 40 cached variants
    assert all(mixed.text_features[i, j].min() == 7.0 for i, j in swapped)
    again = add_robocrys_variants(views, crystals, cache, seed=0)
    assert again.texts == mixed.texts  # seeded


@pytest.mark.slow
@pytest.mark.skipif(not robocrys_available(), reason="robocrys is not installed (optional extra crystaloop[robocrys])")
def test_real_robocrys_description(fixtures_dir: Path, tmp_path: Path) -> None:
    from pymatgen.core import Structure

    salt = Crystal.from_pymatgen(Structure.from_file(fixtures_dir / "structures" / "NaCl.cif"))
    path = tmp_path / "salt.jsonl.gz"
    report = build_cache([salt], path, progress=False)
    assert report.described == 1, read_records(path)
    text = cached_description(salt, load_cache(path))
    assert text is not None and "NaCl" in text and "Fm-3m" in text and "np.int" not in text
    assert read_records(path)[0]["source"].startswith("robocrys ")


@pytest.mark.parametrize("name", ["perov_5_val", "carbon_24_val"])
def test_shipped_cache_matches_its_dataset(name: str) -> None:
    path = SHIPPED_ROBOCRYS_DIR / f"{name}.jsonl.gz"
    if name == "carbon_24_val" and not path.is_file():
        pytest.skip("no carbon_24/val cache shipped yet")
    from crystaloop.data.datasets import load_dataset

    cache = load_cache(path)
    assert len(cache) >= 20
    dataset = load_dataset(name.replace("_val", "/val"))
    by_hash = {c.canonical_hash(): c for c in dataset.crystals}
    assert set(cache) <= set(by_hash)
    for key, description in list(cache.items())[:50]:
        assert by_hash[key].reduced_formula[:1] in description  # the description is of that structure
    assert all(len(r.get("description", r.get("error", ""))) > 0 for r in read_records(path))
