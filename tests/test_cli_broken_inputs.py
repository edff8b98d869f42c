"""The bad-input corpus through every command that reads structures (issue 22).

Each file of ``tests/fixtures/broken`` (see its README) goes through ``data import --strict``,
``data info``, ``surrogate predict``, ``oracle relax --oracle emt`` and ``hull eval --oracle emt``:
each must exit with its documented code and one message naming the file and the reason, never a
traceback, and leave an existing store unchanged.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crystaloop.cli import app

runner = CliRunner()
BROKEN = Path(__file__).resolve().parent / "fixtures" / "broken"

# file → words of the reason, as every command must print them (shared with tests/data/test_broken_inputs.py)
REASONS = json.loads((BROKEN.parent / "broken_reasons.json").read_text())

# command → (arguments after the file, exit code for a file with no readable structure)
COMMANDS = {
    "data import": (["data", "import"], ["--strict"], 1),
    "data info": (["data", "info"], [], 2),
    "surrogate predict": (["surrogate", "predict"], ["--target", "dir_gap"], 2),
    "oracle relax": (["oracle", "relax"], ["--oracle", "emt"], 2),
    "hull eval": (["hull", "eval"], ["--oracle", "emt"], 2),
}


def _dump(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return list(conn.iterdump())


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    db = tmp_path_factory.mktemp("store") / "store.db"
    url = f"sqlite:///{db}"
    good = Path(__file__).resolve().parent / "fixtures" / "structures"
    result = runner.invoke(app, ["data", "import", str(good), "--store", url])
    assert result.exit_code == 0, result.output
    return url, db


def test_corpus_is_documented() -> None:
    readme = (BROKEN.parent / "README.md").read_text()
    assert sorted(p.name for p in BROKEN.iterdir()) == sorted(REASONS)
    for name in REASONS:
        assert f"`{name}`" in readme, f"{name} needs its line in tests/fixtures/README.md"


@pytest.mark.parametrize("name", sorted(REASONS))
def test_every_command_refuses_the_file_naming_it_and_the_reason(name: str, store: tuple[str, Path]) -> None:
    url, db = store
    before = _dump(db)
    for command, (words, options, code) in COMMANDS.items():
        extra = ["--store", url] if command == "data import" else []
        result = runner.invoke(app, [*words, str(BROKEN / name), *options, *extra])
        where = f"{command} {name}: exit {result.exit_code}\n{result.output}"
        assert result.exception is None or isinstance(result.exception, SystemExit), where
        assert "Traceback" not in result.output, where
        assert result.exit_code == code, where
        assert name in result.output and REASONS[name] in result.output, where
    assert _dump(db) == before


def test_a_folder_of_the_whole_corpus_is_refused_file_by_file(store: tuple[str, Path]) -> None:
    url, db = store
    before = _dump(db)
    result = runner.invoke(app, ["data", "import", str(BROKEN), "--store", url, "--strict"])
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.exit_code == 1, result.output
    lines = {line.split(":")[0].strip(): line for line in result.output.splitlines() if "bad row" in line}
    for name in (n for n in REASONS if not n.endswith(".csv")):  # the folder reader takes CIF/POSCAR files
        assert REASONS[name] in lines[f"bad row {name}"]
    assert _dump(db) == before


def test_no_traceback_for_os_faults_and_binary_inputs(tmp_path: Path, store: tuple[str, Path]) -> None:
    url, _ = store
    good = str(Path(__file__).resolve().parent / "fixtures" / "structures" / "NaCl.cif")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    binary = tmp_path / "junk.csv"
    binary.write_bytes(bytes(range(256)) * 8)
    cases = {
        ("oracle", "relax", good, "--oracle", "emt", "--out", str(blocker / "x.extxyz")): "is a file, not a folder",
        ("hull", "eval", good, "--oracle", "emt", "--out", str(blocker / "x.json")): "is a file, not a folder",
        ("data", "import", good, "--store", f"sqlite:///{blocker / 'x.db'}"): str(blocker),
        ("data", "split", str(binary), "--out", str(tmp_path / "parts")): "cannot read",
        ("data", "info", str(binary)): "cannot read",
        ("data", "import", str(binary), "--store", url): "cannot read",
    }
    for args, words in cases.items():
        result = runner.invoke(app, list(args))
        where = f"{args}: exit {result.exit_code}\n{result.output}"
        assert result.exception is None or isinstance(result.exception, SystemExit), where
        assert result.exit_code == 2 and "Traceback" not in result.output and words in result.output, where


def test_an_unexpected_exception_is_one_error_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import crystaloop.commands.common as common

    def boom(path):  # noqa: ANN001, ANN202
        raise RuntimeError("a bug")

    monkeypatch.setattr(common, "read_structures", boom)
    monkeypatch.setattr("crystaloop.commands.oracle.read_structures", boom)
    result = runner.invoke(app, ["oracle", "relax", "x.cif", "--oracle", "emt"])
    assert result.exit_code == 2 and "unexpected RuntimeError: a bug" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_data_import_redacts_the_store_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from crystaloop.data.store import CandidateStore

    secret = "postgresql+psycopg://crystaloop:s3cret@db.example:5432/crystaloop"
    original = CandidateStore.__init__

    def init(self, url=None, **kwargs):  # noqa: ANN001, ANN003, ANN202
        original(self, f"sqlite:///{tmp_path / 'store.db'}", **kwargs)
        self.url = secret  # what the store line prints

    monkeypatch.setattr(CandidateStore, "__init__", init)
    good = str(Path(__file__).resolve().parent / "fixtures" / "structures")
    result = runner.invoke(app, ["data", "import", good, "--store", secret])
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output and "crystaloop:***@db.example" in result.output


@pytest.mark.parametrize(("option", "words"), [("--composition", "--composition is empty"), ("--chemsys", "--chemsys '' is empty")])
def test_generate_refuses_an_empty_composition_or_system(option: str, words: str, tmp_path: Path) -> None:
    """Issue 22: `generate --composition ''` silently ran unconditional generation."""
    result = runner.invoke(app, ["generate", option, "", "--out", str(tmp_path / "x.cif")])
    assert result.exit_code == 2 and words in result.output, result.output
    assert not (tmp_path / "x.cif").exists()
