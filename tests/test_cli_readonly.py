"""Read-only commands (`db ls`, `db query`, `serve`) refuse a SQLite store that does not exist
and create nothing: no folder, no empty database (issue 21)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from crystaloop.cli import app
from crystaloop.data.errors import StoreError
from crystaloop.data.store import CandidateStore, existing_store_url

runner = CliRunner()


@pytest.mark.parametrize("args", [("db", "ls"), ("db", "query", "nsites>0"), ("serve", "--port", "5999")])
def test_missing_sqlite_store_is_an_error_and_nothing_is_created(tmp_path: Path, args: tuple[str, ...]) -> None:
    missing = tmp_path / "does" / "not" / "exist.db"
    result = runner.invoke(app, [*args, "--store", f"sqlite:///{missing}"], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "no store at" in result.output and "exist.db" in result.output
    assert not (tmp_path / "does").exists()


def test_missing_default_store_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CRYSTALOOP_DB_URL", raising=False)
    result = runner.invoke(app, ["db", "ls"], catch_exceptions=False)
    assert result.exit_code == 2 and "crystaloop.db" in result.output
    assert not (tmp_path / "crystaloop.db").exists()


def test_existing_store_is_listed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    CandidateStore(url).close()
    assert existing_store_url(url) == url
    result = runner.invoke(app, ["db", "ls", "--store", url], catch_exceptions=False)
    assert result.exit_code == 0 and "0 of 0 candidates" in result.output
    assert existing_store_url("sqlite://") == "sqlite://"  # in memory: nothing to find
    with pytest.raises(StoreError, match="no store at"):
        existing_store_url(f"sqlite:///{tmp_path / 'other.db'}")
