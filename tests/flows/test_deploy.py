"""Deployments: schedules and parameters built from a campaign, overrides, and a served deployment
on the real test server that registers with two cron schedules, pauses, resumes and completes a
manually triggered run with a per-run override."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import yaml

from crystaloop.data.errors import CrystaloopError
from crystaloop.data.store import CandidateFilter, CandidateStore
from crystaloop.flows.campaign import resolve_config
from crystaloop.flows.config import artifact_key, merge_overrides
from crystaloop.flows.deploy import build_deployment
from crystaloop.loop.config import CampaignConfig


def test_build_deployment_has_every_schedule_and_the_config_as_parameters(replay_campaign, store_url):
    config = replay_campaign("nightly-test")
    deployment = build_deployment(config, name="nightly", crons=["0 2 * * *", "30 14 * * 1"], intervals_s=[3600], store_url=store_url)
    assert deployment.name == "nightly"
    assert [s.schedule.cron for s in deployment.schedules[:2]] == ["0 2 * * *", "30 14 * * 1"]
    assert deployment.schedules[2].schedule.interval.total_seconds() == 3600
    # the settings a user set (kinds kept), which validate back to the same campaign
    assert deployment.parameters["config"] == config.explicit_settings()
    assert CampaignConfig.model_validate(deployment.parameters["config"]) == config
    assert deployment.parameters["store_url"] == store_url and deployment.parameters["iterations_per_run"] == 1
    assert deployment.entrypoint == "crystaloop.flows.campaign.campaign_flow"
    with pytest.raises(CrystaloopError, match=r"not a cron expression: '0 2 \* \*'"):
        build_deployment(config, crons=["0 2 * *"])


def test_overrides_merge_nested_and_dotted_keys(replay_campaign):
    config = replay_campaign("override-test")
    changed = resolve_config(config, {"budget.iterations": 5, "strategy": {"kind": "random"}})
    assert changed.budget.iterations == 5 and changed.budget.oracle_calls_per_iteration == 3
    assert changed.strategy.kind == "random" and changed.objectives == config.objectives
    assert merge_overrides({"a": {"b": 1, "c": 2}}, {"a.b": 3}) == {"a": {"b": 3, "c": 2}}
    with pytest.raises(CrystaloopError, match="budget"):
        resolve_config(config, {"budget.iterations": 0})
    with pytest.raises(CrystaloopError, match="seed is 0, not a mapping"):
        merge_overrides(config.model_dump(mode="json"), {"seed.x": 1})
    assert artifact_key("My_Campaign.v2", "top-candidates") == "my-campaign-v2-top-candidates"


def _wait_for_deployment(name: str, process: subprocess.Popen, timeout: float = 120.0):  # noqa: ANN202
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"the serving process exited with {process.returncode}: {process.stdout.read().decode()[-3000:]}")
            try:
                return client.read_deployment_by_name(name)
            except ObjectNotFound:
                time.sleep(1.0)
    pytest.fail(f"deployment {name} did not register within {timeout} s")


@pytest.mark.slow
def test_served_deployment_with_cron_schedules_runs_when_triggered(prefect_server, replay_campaign, tmp_path, store_url):
    from prefect import get_client

    from crystaloop.flows.deploy import set_paused, trigger

    config = replay_campaign("served-test", budget={"iterations": 3, "candidates_per_iteration": 10, "oracle_calls_per_iteration": 2})
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    command = [
        sys.executable, "-c", "import typer; from crystaloop.commands.flows import deploy; typer.run(deploy)",
        str(path), "--cron", "0 2 * * *", "--cron", "30 14 * * 1", "--name", "served", "--store", store_url, "--iterations-per-run", "0",
    ]
    env = {**os.environ, "PREFECT_RUNNER_POLL_FREQUENCY": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deployment = _wait_for_deployment("crystaloop-campaign/served", process)
        assert sorted(s.schedule.cron for s in deployment.schedules) == ["0 2 * * *", "30 14 * * 1"]
        assert all(s.active for s in deployment.schedules) and not deployment.paused
        set_paused("served", True)
        with get_client(sync_client=True) as client:
            assert client.read_deployment(deployment.id).paused
        set_paused("served", False)
        with get_client(sync_client=True) as client:
            assert not client.read_deployment(deployment.id).paused
        with pytest.raises(CrystaloopError, match="no deployment 'crystaloop-campaign/absent'; deployments: .*served"):
            set_paused("absent", True)
        # a per-run override: this run stops the campaign after one iteration
        run = trigger("served", {"budget.iterations": 1}, timeout_s=240)
        assert run.state.is_completed(), run.state
        assert run.parameters["overrides"] == {"budget.iterations": 1}
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    with CandidateStore(store_url) as store:
        assert [r.index for r in store.iterations(config.name) if r.finished_at is not None] == [0]
        assert store.count(CandidateFilter(campaign=config.name, status=["evaluated", "failed"])) == 2


@pytest.mark.slow
def test_a_work_pool_deployment_runs_on_a_prefect_worker(prefect_server, replay_campaign, tmp_path, store_url):
    """`campaign deploy --pool` registers with a process work pool and exits; a `prefect worker` started
    afterwards, in another process, picks the triggered run up and completes one iteration."""
    from prefect import get_client
    from typer.testing import CliRunner

    from crystaloop.cli import app
    from crystaloop.flows.deploy import trigger

    config = replay_campaign("pool-test", budget={"iterations": 2, "candidates_per_iteration": 10, "oracle_calls_per_iteration": 2})
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    result = CliRunner().invoke(app, ["campaign", "deploy", str(path), "--name", "pooled", "--store", store_url,
                                      "--pool", "crystaloop-test-pool"])
    assert result.exit_code == 0, result.output
    assert "prefect worker start --pool crystaloop-test-pool" in result.output.replace("\n", "")
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("crystaloop-campaign/pooled")
        assert deployment.work_pool_name == "crystaloop-test-pool"
        assert client.read_work_pool("crystaloop-test-pool").type == "process"
    run = trigger("pooled", {"budget.iterations": 1}, timeout_s=0)  # scheduled; nothing runs it yet
    worker = subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", "crystaloop-test-pool", "--type", "process", "--run-once"],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path,
    )
    try:
        output, _ = worker.communicate(timeout=280)
    except subprocess.TimeoutExpired:
        worker.kill()
        output, _ = worker.communicate()
        pytest.fail(f"the worker did not finish within 280 s:\n{output.decode()[-3000:]}")
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run.id).state
    assert state is not None and state.is_completed(), f"{state}\n{output.decode()[-3000:]}"
    with CandidateStore(store_url) as store:
        assert [r.index for r in store.iterations(config.name) if r.finished_at is not None] == [0]
        assert store.count(CandidateFilter(campaign=config.name, status=["evaluated", "failed"])) == 2
    from crystaloop.flows.deploy import register_with_pool

    with pytest.raises(CrystaloopError, match="no work pool 'absent'; work pools: .*crystaloop-test-pool"):
        register_with_pool(build_deployment(config, name="x", store_url=store_url), "absent", create=False)


def test_dask_address_points_the_runner_at_an_existing_scheduler():
    from crystaloop.commands.flows import _runner
    from crystaloop.flows.campaign import make_task_runner
    from crystaloop.flows.config import FlowSettings

    settings = FlowSettings(runner=_runner("dask", "tcp://10.0.0.5:8786"))
    assert settings.runner.kind == "dask" and settings.runner.address == "tcp://10.0.0.5:8786"
    assert make_task_runner(settings.runner).address == "tcp://10.0.0.5:8786"  # no local cluster is built
    assert FlowSettings(runner=_runner("dask", None)).runner.address is None
    with pytest.raises(CrystaloopError, match="--dask-address 'tcp://h:1' needs --runner dask"):
        _runner("threads", "tcp://h:1")
