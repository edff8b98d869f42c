"""``crystaloop search`` and ``multimodal index|eval`` on a tiny untrained model and a SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from crystaloop.commands.multimodal import multimodal_app, search
from crystaloop.data.records import Candidate, Provenance
from crystaloop.data.store import CandidateStore
from crystaloop.data.testing import random_crystal
from crystaloop.data.xrd_grid import two_theta_grid
from crystaloop.multimodal.fusion import FusionConfig, FusionModel, load_checkpoint, save_checkpoint
from crystaloop.multimodal.store_index import embedding_name, index_store, search_store
from crystaloop.multimodal.xrd import simulate_pattern
from crystaloop.multimodal.xrd_io import write_xy


@pytest.fixture
def app() -> typer.Typer:
    root = typer.Typer()
    root.add_typer(multimodal_app, name="multimodal")
    root.command("search")(search)
    return root


@pytest.fixture
def setup(tmp_path: Path, tiny_config: FusionConfig) -> tuple[Path, str, list]:
    torch.manual_seed(0)
    checkpoint = save_checkpoint(FusionModel(tiny_config), tmp_path / "tiny.pt")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    provenance = Provenance(component="search-tests", version="0", seed=5)
    crystals = [random_crystal(np.random.default_rng(40 + i), n_sites=2 + i % 4) for i in range(12)]
    candidates = [Candidate(crystal=c, provenance=provenance) for c in crystals]  # 12 unrelated crystals
    with CandidateStore(url) as store:
        store.add_many(candidates)
    return checkpoint, url, candidates


def test_query_structure_in_the_store_comes_first(
    setup: tuple[Path, str, list], tmp_path: Path, app: typer.Typer
) -> None:
    checkpoint, url, candidates = setup
    model, info = load_checkpoint(checkpoint)
    name = embedding_name(info)
    with CandidateStore(url) as store:
        assert index_store(store, model, name) == 12
        assert index_store(store, model, name) == 0  # nothing left to embed
        for candidate in candidates[:4]:
            hits = search_store(store, name, model.embed("structure", [candidate.crystal])[0], top=3)
            assert hits[0].key == candidate.id and hits[0].score == pytest.approx(1.0, abs=1e-5)
            assert [h.rank for h in hits] == [0, 1, 2] and hits[0].score >= hits[1].score >= hits[2].score
    cif = tmp_path / "query.cif"
    candidates[3].crystal.to_pymatgen().to(filename=str(cif))
    result = CliRunner().invoke(
        app, ["search", "--like", str(cif), "--top", "3", "--model", str(checkpoint), "--store", url, "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)["hits"]
    assert len(hits) == 3 and hits[0]["id"] == candidates[3].id and hits[0]["rank"] == 1


def test_search_by_pattern_file_indexes_a_fresh_store(
    setup: tuple[Path, str, list], tmp_path: Path, app: typer.Typer
) -> None:
    checkpoint, url, candidates = setup
    pattern = write_xy(tmp_path / "p.xy", two_theta_grid(), simulate_pattern(candidates[0].crystal) * 900 + 30)
    result = CliRunner().invoke(app, ["search", "--xrd", str(pattern), "--model", str(checkpoint), "--store", url])
    assert result.exit_code == 0, result.output
    assert "top 10 by cosine similarity (--xrd)" in result.output
    with CandidateStore(url) as store:
        assert store.embedding_models() == {embedding_name(load_checkpoint(checkpoint)[1]): 12}


def test_search_errors_are_clear(setup: tuple[Path, str, list], tmp_path: Path, app: typer.Typer) -> None:
    checkpoint, url, _ = setup
    runner = CliRunner()
    none = runner.invoke(app, ["search", "--model", str(checkpoint), "--store", url])
    assert none.exit_code == 2 and "exactly one of --text, --xrd, --like" in none.output
    broken = tmp_path / "broken.xy"
    broken.write_text("10 1\n" * 25 + "11 abc\n")
    bad = runner.invoke(app, ["search", "--xrd", str(broken), "--model", str(checkpoint), "--store", url])
    assert bad.exit_code == 2 and "line 26" in bad.output
    empty = runner.invoke(app, ["search", "--text", "  ", "--model", str(checkpoint), "--store", url])
    assert empty.exit_code == 2 and "empty" in empty.output
    missing = runner.invoke(app, ["search", "--like", str(tmp_path / "x.cif"), "--model", str(tmp_path / "none.pt")])
    assert missing.exit_code == 2 and "no multimodal checkpoint" in missing.output


def test_index_command(setup: tuple[Path, str, list], app: typer.Typer) -> None:
    checkpoint, url, _ = setup
    result = CliRunner().invoke(app, ["multimodal", "index", "--model", str(checkpoint), "--store", url])
    assert result.exit_code == 0 and "embedded 12 candidates" in result.output
    assert np.isfinite(CandidateStore(url).load_embeddings(embedding_name(load_checkpoint(checkpoint)[1]))[1]).all()


@pytest.mark.slow
def test_eval_command_writes_recall_next_to_baselines(
    setup: tuple[Path, str, list], tmp_path: Path, app: typer.Typer, fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crystaloop.multimodal import features

    monkeypatch.setattr(features, "views_cache_dir", lambda: tmp_path / "views")
    checkpoint, _, _ = setup
    out = tmp_path / "metrics.json"
    data = str(fixtures_dir / "mp20_layout.csv")
    result = CliRunner().invoke(
        app, ["multimodal", "eval", "--data", data, "--out", str(out), "--model", str(checkpoint)]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    n = metrics["n"]
    assert n == 3 and metrics["random"]["recall@1"] == pytest.approx(1 / 3)
    for key in ("text_to_structure", "xrd_to_structure", "augmented_xrd_to_structure", "composition_only"):
        assert 0.0 <= metrics[key]["recall@1"] <= metrics[key]["recall@5"] == 1.0  # 5 ≥ n: always found
    assert metrics["data"] == data and len(metrics["checkpoint_hash"]) == 64


def test_text_search_lists_only_candidates_with_the_named_elements(setup: tuple[Path, str, list], app: typer.Typer) -> None:
    checkpoint, url, candidates = setup
    result = CliRunner().invoke(app, ["search", "--text", "a titanium oxide", "--top", "12", "--model", str(checkpoint),
                                      "--store", url, "--format", "json"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)["hits"]
    holding = {c.id for c in candidates if {"Ti", "O"} <= set(c.crystal.composition)}
    assert 0 < len(holding) < len(candidates)  # the fixture has both kinds
    assert {h["id"] for h in hits} == holding and [h["rank"] for h in hits] == list(range(1, len(hits) + 1))
    assert "contains O, Ti" in result.stderr
