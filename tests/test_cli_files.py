"""Files between commands: every structure of a multi-structure file is read (and counted), and
what `generate` and `oracle relax` write is read back by the others (issue 21)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ase.io import read
from typer.testing import CliRunner

from crystaloop.cli import app

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Eight SrTiO3 cells from the shipped two-step consistency model, in each format."""
    folder = tmp_path_factory.mktemp("generated")
    paths = {}
    for suffix in (".cif", ".json", ".extxyz"):
        out = folder / f"s{suffix}"
        result = _invoke("generate", "--composition", "SrTiO3", "-n", "8", "--out", str(out), "--model", "perov_5_consistency", "--keep-invalid")
        assert result.exit_code == 0, result.output
        paths[suffix] = out
    return paths


@pytest.mark.parametrize("suffix", [".cif", ".json", ".extxyz"])
def test_predict_reads_every_generated_structure(generated: dict[str, Path], suffix: str) -> None:
    result = _invoke("surrogate", "predict", str(generated[suffix]), "--target", "heat_ref")
    assert result.exit_code == 0, result.output
    assert "read 8 structures from" in result.output
    assert result.output.count("SrTiO3") >= 8


def test_generated_json_is_pymatgen_and_cif_has_provenance(generated: dict[str, Path]) -> None:
    from pymatgen.core import Structure

    rows = json.loads(generated[".json"].read_text())
    assert len(rows) == 8 and all(Structure.from_dict(r).composition.reduced_formula == "SrTiO3" for r in rows)
    ours = rows[0]["properties"]["crystaloop"]
    assert ours["seed"] == 0 and ours["checkpoint"] and ours["generator"]
    text = generated[".cif"].read_text()
    assert text.count("\ndata_") + text.startswith("data_") == 8
    assert "# checkpoint: " in text and "# seed: 0" in text and "# symmetry: spglib symprec=" in text


def test_relax_reads_every_structure_and_writes_energy_forces_stress(tmp_path: Path) -> None:
    from ase.build import bulk

    from crystaloop.data.crystal import Crystal
    from crystaloop.data.datasets.files import write_structure_file

    metals = [Crystal.from_ase(bulk(symbol, "fcc", a=a)) for symbol, a in (("Cu", 3.7), ("Au", 4.2), ("Ni", 3.6))]
    source = tmp_path / "metals.cif"
    write_structure_file(source, metals, ids=["cu", "au", "ni"])
    out = tmp_path / "relaxed.extxyz"
    result = _invoke("oracle", "relax", str(source), "--oracle", "emt", "--steps", "3", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "read 3 structures from" in result.output
    frames = read(str(out), index=":")
    assert [a.info["crystaloop_id"] for a in frames] == ["cu", "au", "ni"]
    for atoms in frames:
        assert atoms.info["status"] in ("ok", "unconverged") and atoms.info["oracle"] == "emt"
        assert atoms.get_forces().shape == (len(atoms), 3) and atoms.get_stress().shape == (6,)
        assert isinstance(atoms.get_potential_energy(), float)
        assert atoms.get_potential_energy() / len(atoms) == pytest.approx(atoms.info["energy_per_atom"], abs=1e-6)
    again = _invoke("oracle", "relax", str(out), "--oracle", "emt", "--steps", "3")
    assert again.exit_code == 0 and "read 3 structures from" in again.output


def test_generate_drops_implausible_samples_with_reasons_and_never_stores_them(tmp_path: Path) -> None:
    from crystaloop.data.store import CandidateStore

    url = f"sqlite:///{tmp_path / 'store.db'}"
    out = tmp_path / "b.json"
    args = ("generate", "--chemsys", "Ba-Ti-O", "-n", "8", "--model", "perov_5_consistency", "--store", url)
    result = _invoke(*args, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "samples implausible, dropped" in result.output and "fails SMACT charge neutrality" in result.output
    dropped = int(result.output.split("validity: ")[1].split(" of ")[0])
    kept = json.loads(out.read_text())
    assert len(kept) == 8 - dropped and all(r["properties"]["crystaloop"]["status"] == "generated" for r in kept)
    with CandidateStore(url) as store:
        assert store.count() == 8 - dropped and f"{dropped} implausible not stored" in result.output
    everything = tmp_path / "all.json"
    again = _invoke(*args, "--out", str(everything), "--keep-invalid")
    assert again.exit_code == 0 and "kept with status rejected (--keep-invalid)" in again.output
    rows = [r["properties"]["crystaloop"] for r in json.loads(everything.read_text())]
    assert len(rows) == 8 and sum(r["status"] == "rejected" for r in rows) == dropped
    assert any("validity: failed" in v for r in rows for v in r["verdicts"])
    with CandidateStore(url) as store:
        assert store.count() == 8 - dropped


def test_screen_uses_the_campaign_validity_guard() -> None:
    from crystaloop.commands.generator import screen_generated
    from crystaloop.data.crystal import Crystal
    from crystaloop.data.records import Candidate, Provenance

    good = Crystal.from_symbols([[3.9, 0, 0], [0, 3.9, 0], [0, 0, 3.9]], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]], ["Sr", "Ti", "O", "O", "O"])
    close = Crystal.from_symbols([[3.9, 0, 0], [0, 3.9, 0], [0, 0, 3.9]], [[0, 0, 0], [0.03, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]], ["Sr", "Ti", "O", "O", "O"])
    unbalanced = Crystal.from_symbols([[3.9, 0, 0], [0, 3.9, 0], [0, 0, 3.9]], [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5]], ["Na", "Cl", "Cl"])
    candidates = Candidate.from_crystals([good, close, unbalanced], Provenance(component="test"))
    plausible, implausible = screen_generated(candidates)
    assert [c.crystal.reduced_formula for c in plausible] == ["SrTiO3"]
    reasons = [c.verdicts[-1].reason for c in implausible]
    assert "structure:" in reasons[0] and "SMACT" in reasons[1]
    assert all(c.status.value == "rejected" for c in implausible)


def test_default_generate_is_the_template_generator_for_plain_structure_prediction(tmp_path: Path) -> None:
    """``--generator auto``: a plain --composition request goes to the template generator (its
    structures carry the composition asked for); --generator diffusion, or an option only the
    diffusion model reads (--steps/--method), takes the distilled model or its teacher, whose
    progress bar moves per step."""
    from pymatgen.io.cif import CifParser

    out = tmp_path / "t.cif"
    result = _invoke("generate", "--composition", "SrTiO3", "-n", "2", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "generator: template" in result.output and "--generator diffusion" in result.output
    written = CifParser(str(out)).parse_structures(primitive=False)
    assert len(written) == 2 and all(s.composition.reduced_formula == "SrTiO3" for s in written)
    distilled = _invoke("generate", "--composition", "SrTiO3", "-n", "4", "--out", str(tmp_path / "d.cif"), "--generator", "diffusion")
    assert distilled.exit_code == 0, distilled.output
    assert "perov_5_consistency, 2 consistency steps" in distilled.output and "2/2" in distilled.output
    assert "generator: template" not in distilled.output
    teacher = _invoke("generate", "--composition", "SrTiO3", "-n", "2", "--out", str(tmp_path / "s.cif"), "--steps", "3", "--method", "ddim", "--keep-invalid")
    assert teacher.exit_code == 0, teacher.output
    assert "perov_5, 3 ddim steps" in teacher.output and "3/3" in teacher.output


def test_auto_generator_refuses_a_library_it_would_not_use(tmp_path: Path) -> None:
    result = _invoke("generate", "--composition", "SrTiO3", "--num-atoms", "5", "--library", "perov_5/train", "--out", str(tmp_path / "x.cif"))
    assert result.exit_code != 0
    assert "--library feeds --generator substitution or template" in result.output and "--num-atoms" in result.output
    assert not (tmp_path / "x.cif").exists()


def test_sample_reports_every_step_of_every_batch() -> None:
    from crystaloop.data.records import Condition
    from crystaloop.generator.config import SamplerConfig
    from crystaloop.generator.diffusion.generator import DiffusionGenerator
    from crystaloop.generator.shipped import shipped_generator_path

    generator = DiffusionGenerator.from_checkpoint(shipped_generator_path("perov_5_consistency"))
    generator = DiffusionGenerator(generator.model, SamplerConfig(method="consistency", steps=2, batch_size=3))
    calls: list[tuple[int, int]] = []
    generator.sample(7, Condition(composition={"Sr": 1, "Ti": 1, "O": 3}), seed=0, on_step=lambda s, t: calls.append((s, t)))
    assert calls == [(1, 2), (2, 2)] * 3  # three batches (3 + 3 + 1) of two steps


def test_relax_refuses_an_unknown_out_extension_before_relaxing(fixtures_dir: Path, tmp_path: Path) -> None:
    result = _invoke("oracle", "relax", str(fixtures_dir / "structures"), "--oracle", "emt", "--out", str(tmp_path / "r.pdb"))
    assert result.exit_code == 2 and "unknown extension '.pdb'" in result.output and "read " not in result.output
