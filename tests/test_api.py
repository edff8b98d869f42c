"""The Python API: the README's example runs, and each call accepts pymatgen, ASE and paths."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import crystaloop

README = Path(__file__).resolve().parents[1] / "README.md"


def test_import_stays_light() -> None:
    code = "import sys, crystaloop; crystaloop.__version__; print('torch' in sys.modules, 'pymatgen.core' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == ["False", "False"]
    assert set(crystaloop.__all__) >= {"generate", "predict", "relax", "e_above_hull", "open_store"}
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        crystaloop.nothing  # noqa: B018


def test_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    section = README.read_text().split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CRYSTALOOP_CACHE_DIR", str(tmp_path / "cache"))
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - the documented example itself
    printed = capsys.readouterr().out
    assert "SrTiO3" in printed and "ok" in printed and "0 candidates in the store" in printed


def test_as_crystals_takes_pymatgen_ase_and_paths(fixtures_dir: Path) -> None:
    from ase.build import bulk

    from crystaloop.data.errors import InvalidStructureError

    from_path = crystaloop.as_crystals(fixtures_dir / "structures")
    assert sorted(c.reduced_formula for c in from_path) == ["C", "NaCl", "SrTiO3"]
    structure = from_path[0].to_pymatgen()
    assert [c.reduced_formula for c in crystaloop.as_crystals(structure)] == [from_path[0].reduced_formula]
    assert [c.reduced_formula for c in crystaloop.as_crystals([bulk("Cu"), structure])] == ["Cu", from_path[0].reduced_formula]
    with pytest.raises(InvalidStructureError, match="allowed: pymatgen Structure"):
        crystaloop.as_crystals([42])


def test_generate_de_novo_and_open_store_must_exist(tmp_path: Path) -> None:
    from crystaloop.data.errors import StoreError

    structures = crystaloop.generate("Ba-Ti-O", n=6, seed=1, keep_invalid=True)
    assert len(structures) == 6 and all(set(s.composition.chemical_system.split("-")) <= {"Ba", "Ti", "O"} for s in structures)
    with pytest.raises(StoreError, match="no store at"):
        crystaloop.open_store(f"sqlite:///{tmp_path / 'missing.db'}", must_exist=True)
