"""The flow package's plain pieces, without a server: server environment, task runner choice,
artifact rows and markdown, figures, CLI override parsing, the layering of Prefect imports."""

from __future__ import annotations

import numpy as np
import pytest
import typer

from crystaloop.data.crystal import Crystal
from crystaloop.data.records import Candidate, CandidateStatus, Measurement, Provenance, Verdict
from crystaloop.flows.artifacts import summary_markdown, top_candidate_rows
from crystaloop.flows.campaign import make_task_runner
from crystaloop.flows.config import RunnerSettings
from crystaloop.flows.server import ServerSettings, client_environment, server_environment
from crystaloop.loop.plots import discovery_curve_png, pareto_mask
from crystaloop.loop.report import IterationReport


def test_server_environment_is_loopback_quiet_and_takes_a_postgres_url(tmp_path):
    settings = ServerSettings(port=4321, home=str(tmp_path), database_url="postgresql+asyncpg://u:p@127.0.0.1/prefect")
    env = server_environment(settings, base={"PREFECT_API_URL": "http://elsewhere/api", "PATH": "/bin"})
    assert env["PREFECT_SERVER_API_HOST"] == "127.0.0.1" and env["PREFECT_SERVER_API_PORT"] == "4321"
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false" and env["PREFECT_HOME"] == str(tmp_path)
    assert env["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert "PREFECT_API_URL" not in env and env["PATH"] == "/bin"
    assert "PREFECT_API_DATABASE_CONNECTION_URL" not in server_environment(ServerSettings(), base={})
    assert client_environment(settings)["PREFECT_API_URL"] == "http://127.0.0.1:4321/api"


def test_task_runner_follows_the_settings():
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    threads = make_task_runner(RunnerSettings())
    assert isinstance(threads, ThreadPoolTaskRunner) and threads._max_workers == 2
    dask = make_task_runner(RunnerSettings(kind="dask", n_workers=3))
    assert isinstance(dask, DaskTaskRunner) and dask.cluster_kwargs["n_workers"] == 3
    with pytest.raises(ValueError, match="kind"):
        RunnerSettings(kind="ray")


def _candidate(x: float, status: CandidateStatus, measured: float | None, predicted: float, hull: float | None = None) -> Candidate:
    crystal = Crystal(np.eye(3) * (4.0 + x), np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]]), np.array([38, 8]))
    measurements = () if measured is None else (Measurement(oracle="replay", property="heat_ref", value=measured),)
    if hull is not None:
        measurements += (Measurement(oracle="replay", property="e_above_hull", value=hull, units="eV/atom"),)
    return Candidate(
        crystal=crystal, provenance=Provenance(component="test"), status=status, predictions={"heat_ref": (predicted, 0.1, "eV")},
        measurements=measurements, verdicts=(Verdict(guard="validity", ok=True), Verdict(guard="diversity", ok=True)),
    )


def test_top_candidates_rank_measured_first_then_by_the_objective(replay_campaign):
    config = replay_campaign("rows")  # minimise heat_ref
    pool = [
        _candidate(0.1, CandidateStatus.SCORED, None, -3.0),
        _candidate(0.2, CandidateStatus.EVALUATED, -0.2, -1.0, hull=0.05),
        _candidate(0.3, CandidateStatus.EVALUATED, -0.9, 0.0),
        _candidate(0.4, CandidateStatus.REJECTED, None, -9.0),
    ]
    rows = top_candidate_rows(pool, config, k=3)
    assert [r["heat_ref oracle"] for r in rows] == ["-0.9", "-0.2", ""]
    assert rows[2]["heat_ref predicted"] == "-3 ± 0.1" and rows[1]["e_above_hull (eV/atom)"] == "0.05"
    assert rows[0]["formula"] == "SrO" and rows[0]["guards"] == "validity: ok; diversity: ok"
    assert len(top_candidate_rows(pool, config, k=1)) == 1


def test_summary_and_discovery_curve(replay_campaign):
    config = replay_campaign("summary")
    reports = [
        IterationReport(campaign="summary", iteration=i, config_hash="abc", generated=10, oracle_calls=3, evaluated=3, verified_hits=["x"] * i, rejected_by_reason={"validity": 2})
        for i in range(3)
    ]
    text = summary_markdown(reports[2], config)
    assert text.startswith("# summary: iteration 2") and "| verified hits | 2 |" in text and "validity: 2" in text
    png = discovery_curve_png(reports, "curve")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert pareto_mask(np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.5, 0.5]])).tolist() == [True, True, False, True]


def test_cli_overrides_parse_yaml_scalars_and_refuse_bad_pairs():
    from crystaloop.commands.flows import parse_overrides

    assert parse_overrides(["budget.iterations=4", "strategy.kind=bo", "seed=7", "oracle.fmax=0.05"]) == {
        "budget.iterations": 4, "strategy.kind": "bo", "seed": 7, "oracle.fmax": 0.05,
    }
    with pytest.raises(typer.Exit):
        parse_overrides(["budget.iterations"])


def test_flow_run_names_come_from_the_campaign_as_object_or_deployment_json():
    from crystaloop.flows.campaign import _campaign_name
    from crystaloop.loop.config import CampaignConfig

    config = CampaignConfig.model_validate({"name": "lmo-search", "objectives": [{"property": "e_above_hull", "goal": "minimise"}]})
    assert _campaign_name(config) == "lmo-search"
    assert _campaign_name(config.model_dump(mode="json")) == "lmo-search"  # as a deployment passes it
    assert _campaign_name(None) == "campaign" and _campaign_name({}) == "campaign"  # naming never fails a run
