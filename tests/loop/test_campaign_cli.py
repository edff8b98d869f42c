"""``campaign run`` on a replay campaign: runs, refuses a rerun without --resume, resumes."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from crystaloop.commands.campaign import campaign_app

CONFIG = """
name: cli-replay
objectives: [{property: heat_ref, goal: minimise, units: eV}]
budget: {iterations: 1, candidates_per_iteration: 12, oracle_calls_per_iteration: 2}
strategy: {kind: random}
generator: {kind: dataset-replay, dataset: perov_5/val}
oracle: {kind: replay, dataset: perov_5/val, measure: [heat_ref]}
"""


def test_campaign_run_and_resume(tmp_path):
    app = typer.Typer()
    app.add_typer(campaign_app, name="campaign")
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    url = f"sqlite:///{tmp_path / 's.db'}"
    runner = CliRunner()
    first = runner.invoke(app, ["campaign", "run", str(path), "--store", url])
    assert first.exit_code == 0, first.output
    assert "cli-replay" in first.output
    again = runner.invoke(app, ["campaign", "run", str(path), "--store", url])
    assert again.exit_code == 2 and "--resume" in again.output
    resumed = runner.invoke(app, ["campaign", "run", str(path), "--store", url, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    path.write_text(CONFIG.replace("kind: random", "kind: sideways"))
    bad = runner.invoke(app, ["campaign", "run", str(path), "--store", url])
    assert bad.exit_code == 2 and "sideways" in bad.output
