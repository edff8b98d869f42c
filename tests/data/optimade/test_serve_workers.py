"""`crystaloop serve` starts one server process per core by default (1 to 4), ``--workers`` overrides it (issue 22)."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from crystaloop.cli import app
from crystaloop.data.optimade.config import MAX_DEFAULT_WORKERS, default_workers

runner = CliRunner()


@pytest.mark.parametrize(("cores", "expected"), [(None, 1), (1, 1), (2, 2), (3, 3), (64, MAX_DEFAULT_WORKERS)])
def test_default_workers_follow_the_cores(monkeypatch: pytest.MonkeyPatch, cores: int | None, expected: int) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    assert default_workers() == expected
    assert default_workers(cores) == expected


def _serve(monkeypatch: pytest.MonkeyPatch, url: str, cores: int, *args: str) -> tuple[Any, dict[str, Any]]:
    """Run ``crystaloop serve`` on a machine of ``cores`` cores with uvicorn replaced by a recorder."""
    import uvicorn

    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: calls.append((a, k)))
    monkeypatch.delenv("CRYSTALOOP_DB_URL", raising=False)
    monkeypatch.delenv("CRYSTALOOP_OPTIMADE_CONFIG", raising=False)
    result = runner.invoke(app, ["serve", "--store", url, "--port", "5099", *args])
    assert result.exit_code == 0, result.output
    assert len(calls) == 1
    return result, {"target": calls[0][0][0], **calls[0][1]}


def test_serve_passes_the_computed_default_and_the_override(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from crystaloop.data.store import CandidateStore

    url = f"sqlite:///{tmp_path / 'store.db'}"
    CandidateStore(url).close()

    result, call = _serve(monkeypatch, url, 3)
    assert call["workers"] == 3 and call["factory"] is True  # several processes, each building its app
    assert call["target"] == "crystaloop.data.optimade.app:app_from_environment"
    assert "3 worker(s)" in result.output

    _, call = _serve(monkeypatch, url, 64)
    assert call["workers"] == MAX_DEFAULT_WORKERS

    _, call = _serve(monkeypatch, url, 3, "--workers", "2")  # the option wins over the default
    assert call["workers"] == 2

    for cores, args in ((1, ()), (8, ("--workers", "1"))):  # one process: the app itself, no factory
        result, call = _serve(monkeypatch, url, cores, *args)
        assert "workers" not in call and not isinstance(call["target"], str)
        assert "1 worker(s)" in result.output


def test_serve_help_documents_the_default() -> None:
    result = runner.invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.replace("│", " ").split())  # rich wraps the help inside a box
    assert "--workers" in text and "default one per core, at most 4" in text
