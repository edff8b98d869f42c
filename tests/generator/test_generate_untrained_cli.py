"""``crystaloop generate --generator substitution|random_search``: no trained model needed."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from crystaloop.cli import app

runner = CliRunner()


def test_substitution_from_the_prototypes(tmp_path) -> None:
    out = tmp_path / "caf2.json"
    result = runner.invoke(app, ["generate", "--generator", "substitution", "--composition", "CaF2", "-n", "2",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    from pymatgen.core import Structure

    rows = json.loads(out.read_text())
    assert len(rows) == 2 and all(Structure.from_dict(r).composition.reduced_formula == "CaF2" for r in rows)
    assert "wrote 2 structures (CaF2)" in result.output


def test_random_search_de_novo_with_limits(tmp_path) -> None:
    out = tmp_path / "mgo.cif"
    result = runner.invoke(app, ["generate", "--generator", "random_search", "--chemsys", "Mg-O", "--max-atoms", "4",
                                 "-n", "2", "--seed", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "data_" in out.read_text()


def test_clear_errors(tmp_path) -> None:
    out = tmp_path / "x.json"
    result = runner.invoke(app, ["generate", "--generator", "substitution", "--composition", "NaCl2", "--out", str(out)])
    assert result.exit_code != 0 and "not charge-balanced" in result.output
    result = runner.invoke(app, ["generate", "--generator", "bogus", "--composition", "NaCl", "--out", str(out)])
    assert result.exit_code != 0 and "allowed" in result.output
    result = runner.invoke(app, ["generate", "--generator", "random_search", "--library", "perov_5/train",
                                 "--composition", "NaCl", "--out", str(out)])
    assert result.exit_code != 0 and "--library" in result.output


def test_plot_writes_one_picture_per_written_structure(tmp_path) -> None:
    out, folder = tmp_path / "caf2.cif", tmp_path / "pictures"
    result = runner.invoke(app, ["generate", "--generator", "substitution", "--composition", "CaF2", "-n", "3",
                                 "--out", str(out), "--plot", str(folder)])
    assert result.exit_code == 0, result.output
    from PIL import Image
    from pymatgen.io.cif import CifParser

    written = CifParser(str(out)).parse_structures(primitive=False)
    pictures = sorted(folder.glob("*.png"))
    assert [p.name for p in pictures] == [f"{i:03d}-CaF2.png" for i in range(len(written))] and len(written) == 3
    assert all(Image.open(p).text["Title"] == "CaF2" for p in pictures)
    assert f"pictures: 3 unit cells in {folder}" in result.output.replace("\n", "")


@pytest.mark.slow
def test_a_prompt_naming_an_element_never_yields_a_crystal_without_it(tmp_path) -> None:
    """random_search draws Sr-Ti-O crystals of any of the three elements; the prompt's Ti and its
    exclusion of Sr are enforced on every written structure, and shown back to the user."""
    from pymatgen.core import Structure

    out = tmp_path / "ti.json"
    args = ["generate", "--generator", "random_search", "--chemsys", "Sr-Ti-O", "--max-atoms", "6", "-n", "4",
            "--seed", "1", "--out", str(out), "--text", "an oxide of titanium, strontium-free"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "prompt read as: contains O, Ti; without Sr" in result.output
    structures = [Structure.from_dict(row) for row in json.loads(out.read_text())]
    assert len(structures) == 4
    assert all({"Ti", "O"} <= {e.symbol for e in s.composition} and "Sr" not in s.composition for s in structures)
    off = runner.invoke(app, [*args[:-2], "--text", "an oxide of barium"])
    assert off.exit_code != 0 and "names Ba" in off.output and "--no-prompt-constraints" in off.output


@pytest.mark.slow
def test_template_generator_from_the_cli_keeps_symmetry(tmp_path) -> None:
    """``--generator template`` predicts SrTiO3 from the perov_5 training templates; the written CIFs carry
    their space group, and options of other kinds are refused by name."""
    from pymatgen.io.cif import CifParser
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    out = tmp_path / "srtio3.cif"
    result = runner.invoke(app, ["generate", "--generator", "template", "--composition", "SrTiO3", "-n", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    structures = CifParser(str(out)).parse_structures(primitive=False)
    assert len(structures) == 2 and all(s.composition.reduced_formula == "SrTiO3" for s in structures)
    assert all(SpacegroupAnalyzer(s, symprec=1e-3).get_space_group_number() > 1 for s in structures)
    refused = runner.invoke(app, ["generate", "--generator", "template", "--composition", "SrTiO3", "--max-atoms", "5", "--out", str(out)])
    assert refused.exit_code != 0 and "--max-atoms" in refused.output
