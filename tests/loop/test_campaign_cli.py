"""``campaign run`` on a replay campaign: runs, refuses a rerun without --resume, resumes; with a
composite generator it prints each arm's share and counts per iteration."""

from __future__ import annotations

import pytest
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
    assert "composite generator" not in first.output  # one generator: no arms table
    folder = tmp_path / "cli-replay-report"  # beside the SQLite store
    curve = folder / "discovery-curve.png"
    assert curve.read_bytes().startswith(b"\x89PNG") and str(curve) in first.output.replace("\n", "")
    assert not (folder / "pareto.png").exists()  # one objective: no Pareto plot
    assert '"iteration":0' in (folder / "reports.json").read_text()
    pictures = sorted(folder.glob("top-structure-*.png"))  # unit cells of the best evaluated candidates
    assert pictures and all(p.read_bytes().startswith(b"\x89PNG") for p in pictures)
    assert all(f"]({p.name})" in (folder / "top-structures.md").read_text() for p in pictures)
    again = runner.invoke(app, ["campaign", "run", str(path), "--store", url])
    assert again.exit_code == 2 and "--resume" in again.output
    resumed = runner.invoke(app, ["campaign", "run", str(path), "--store", url, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    path.write_text(CONFIG.replace("kind: random", "kind: sideways"))
    bad = runner.invoke(app, ["campaign", "run", str(path), "--store", url])
    assert bad.exit_code == 2 and "sideways" in bad.output


def test_multi_objective_run_writes_the_pareto_plot(tmp_path):
    app = typer.Typer()
    app.add_typer(campaign_app, name="campaign")
    path = tmp_path / "c.yaml"
    two = CONFIG.replace("objectives: [{property: heat_ref, goal: minimise, units: eV}]",
                         "objectives: [{property: heat_ref, goal: minimise, units: eV}, {property: dir_gap, goal: target, window: [1.5, 3.0], units: eV}]")
    path.write_text(two.replace("measure: [heat_ref]", "measure: [heat_ref, dir_gap]").replace("oracle_calls_per_iteration: 2", "oracle_calls_per_iteration: 4"))
    out = tmp_path / "figures"
    result = CliRunner().invoke(app, ["campaign", "run", str(path), "--store", f"sqlite:///{tmp_path / 's.db'}", "--figures", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "pareto.png").read_bytes().startswith(b"\x89PNG") and (out / "discovery-curve.png").is_file()


COMPOSITE = """
name: cli-arms
seed: 3
objectives: [{property: heat_ref, goal: minimise, units: eV, threshold: 1.0}]
budget: {iterations: 2, candidates_per_iteration: 12, oracle_calls_per_iteration: 4}
strategy: {kind: random, allocation: {kind: bandit, floor: 0.1}}
generator:
  kind: composite
  arms:
    - {name: first, share: 0.75, generator: {kind: dataset-replay, dataset: perov_5/val}}
    - {name: second, share: 0.25, generator: {kind: dataset-replay, dataset: perov_5/val}}
oracle: {kind: replay, dataset: perov_5/val, measure: [heat_ref]}
guards: {synthesizability: {enabled: false}}
sun: {enabled: false}
"""


def test_campaign_run_prints_each_arms_share_and_counts(tmp_path):
    import json

    app = typer.Typer()
    app.add_typer(campaign_app, name="campaign")
    path = tmp_path / "c.yaml"
    path.write_text(COMPOSITE)
    runner = CliRunner()
    table = runner.invoke(app, ["campaign", "run", str(path), "--store", f"sqlite:///{tmp_path / 't.db'}", "--figures", str(tmp_path / "f")])
    assert table.exit_code == 0, table.output
    assert "composite generator" in table.output and "first" in table.output and "second" in table.output
    result = runner.invoke(app, ["campaign", "run", str(path), "--store", f"sqlite:///{tmp_path / 'j.db'}",
                                 "--figures", str(tmp_path / "g"), "--format", "json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    arms, iterations = document["arms"], document["iterations"]
    assert [(r["iteration"], r["arm"]) for r in arms] == [(i, a) for i in (0, 1) for a in ("first", "second")]
    for report in iterations:  # every row is what the iteration's report holds
        mine = {r["arm"]: r for r in arms if r["iteration"] == report["iteration"]}
        assert sum(r["share"] for r in mine.values()) == pytest.approx(1.0)
        assert {a: r["share"] for a, r in mine.items()} == report["arms"]["shares"]
        assert sum(r["generated"] for r in mine.values()) == report["generated"]
        assert sum(r["oracle_calls"] for r in mine.values()) == report["oracle_calls"]
        assert sum(r["hits"] for r in mine.values()) == len(report["verified_hits"])
        assert all(r["allocation"] == "bandit" for r in mine.values())
    assert {a: r["share"] for a, r in ((r["arm"], r) for r in arms if r["iteration"] == 0)} == {"first": 0.75, "second": 0.25}
