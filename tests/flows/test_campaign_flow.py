"""campaign_flow against a real local Prefect server: the same outcome as the plain engine, task
runs and artifacts visible through the client API, retries, score caching, resume after failure."""

from __future__ import annotations

import asyncio
import json

import pytest

from crystaloop.data.records import CandidateStatus
from crystaloop.data.store import CandidateFilter, CandidateStore
from crystaloop.flows.campaign import campaign_flow
from crystaloop.flows.config import FlowSettings, RetrySettings
from crystaloop.flows.runtime import close_stores, install_components, store_for, uninstall_components
from crystaloop.loop.campaign import iteration_candidates, run_campaign
from crystaloop.loop.components import build_components

FAST = {"oracle_retries": RetrySettings(retries=1, backoff_s=0.0, jitter=0.0), "io_retries": RetrySettings(retries=0, backoff_s=0.0, jitter=0.0)}


class FlakyOracle:
    """Wraps an oracle; raises an infrastructure fault on the calls numbered in ``fail_on``."""

    def __init__(self, inner, fail_on: set[int]) -> None:  # noqa: ANN001
        self.inner, self.fail_on, self.calls = inner, set(fail_on), 0
        self.name, self.properties = inner.name, inner.properties

    def evaluate(self, crystals):  # noqa: ANN001, ANN201
        self.calls += 1
        if self.calls in self.fail_on:
            raise ConnectionError(f"oracle backend unreachable (call {self.calls})")
        return self.inner.evaluate(crystals)


def _snapshot(url: str, campaign: str) -> list[tuple[str, str, tuple]]:
    with CandidateStore(url) as store:
        return [(c.id, c.status.value, tuple((m.property, m.value) for m in c.measurements)) for c in iteration_candidates(store, campaign)]


async def _runs_and_artifacts(flow_run_id):  # noqa: ANN001, ANN202
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )

    async with get_client() as client:
        parent = await client.read_flow_run(flow_run_id)
        children = await client.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])))
        task_runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [parent.id, *(c.id for c in children)]}))
        artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_="flow-test")))
        progress = await client.read_artifacts(artifact_filter=ArtifactFilter(type={"any_": ["progress"]}))
    return parent, children, task_runs, artifacts, progress


def test_flow_matches_engine_and_is_visible_in_prefect(prefect_server, replay_campaign, tmp_path):
    config = replay_campaign("flow-test")
    flow_url, direct_url = f"sqlite:///{tmp_path / 'flow.db'}", f"sqlite:///{tmp_path / 'direct.db'}"
    settings = FlowSettings(report_dir=str(tmp_path / "figures"), **FAST)
    state = campaign_flow(config, store_url=flow_url, settings=settings, return_state=True)
    assert state.is_completed(), state.message
    reports = state.result()
    with CandidateStore(direct_url) as store:
        direct = run_campaign(build_components(config), store, config)
    # the flow is a thin wrapper: the same candidates reach the same statuses and measurements
    assert _snapshot(flow_url, config.name) == _snapshot(direct_url, config.name)
    assert [r.verified_hits for r in reports] == [r.verified_hits for r in direct]
    assert [r.oracle_calls for r in reports] == [3, 3]

    parent, children, task_runs, artifacts, progress = asyncio.run(_runs_and_artifacts(state.state_details.flow_run_id))
    assert parent.state.is_completed()
    assert parent.name == "flow-test"  # runs are named after their campaign and iteration (issue 21)
    assert sorted(c.name for c in children) == ["flow-test-iteration-0", "flow-test-iteration-1"] and all(c.state.is_completed() for c in children)
    names = [t.name for t in task_runs]
    for step in ("generate", "score", "guard", "select", "report"):
        assert sorted(n for n in names if n.startswith(step + "-")) == [f"{step}-0", f"{step}-1"]
    oracle_runs = [t for t in task_runs if t.name.startswith("oracle-")]
    assert len(oracle_runs) == 6 and all("oracle" in t.tags and "oracle:replay" in t.tags for t in oracle_runs)
    assert len([n for n in names if n.startswith("update-")]) == 6
    assert all(t.state.is_completed() for t in task_runs)

    latest = {a.key: a for a in sorted(artifacts, key=lambda a: a.created)}
    assert set(latest) == {"flow-test-summary", "flow-test-top-candidates", "flow-test-discovery-curve", "flow-test-top-structures"}
    assert len([a for a in artifacts if a.key == "flow-test-summary"]) == 2  # one version per iteration
    assert "# flow-test: iteration 1" in latest["flow-test-summary"].data
    rows = json.loads(latest["flow-test-top-candidates"].data) if isinstance(latest["flow-test-top-candidates"].data, str) else latest["flow-test-top-candidates"].data
    assert 1 <= len(rows) <= settings.top_k and rows[0]["status"] == "evaluated" and "heat_ref oracle" in rows[0]
    assert "data:image/png;base64," in latest["flow-test-discovery-curve"].data
    structures = latest["flow-test-top-structures"].data  # unit-cell pictures of the best evaluated candidates
    assert structures.count("](data:image/png;base64,") == 3 and "best evaluated structures after iteration 1" in structures
    assert any(a.data == 100.0 for a in progress)
    pngs = sorted((tmp_path / "figures").glob("*.png"))
    assert [p.name for p in pngs] == ["discovery-curve-iter0.png", "discovery-curve-iter1.png",
                                      *(f"top-structure-{rank}-iter{i}.png" for rank in (1, 2, 3) for i in (0, 1))]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    close_stores()


def test_retries_absorb_a_flaky_oracle(prefect_server, replay_campaign, store_url):
    config = replay_campaign("flaky-retry", budget={"iterations": 1, "candidates_per_iteration": 12, "oracle_calls_per_iteration": 3})
    components = build_components(config)
    components.oracle = FlakyOracle(components.oracle, fail_on={1, 3})
    install_components(config, components)
    try:
        settings = FlowSettings(artifacts=False, runner={"kind": "threads", "max_workers": 2}, oracle_tag="oracle-retry-test", oracle_concurrency=1, **FAST)
        state = campaign_flow(config, store_url=store_url, settings=settings, return_state=True)
    finally:
        uninstall_components(config)
    assert state.is_completed(), state.message
    from prefect import get_client

    with get_client(sync_client=True) as client:  # the oracle tag's limit is on the server
        assert client.read_concurrency_limit_by_tag("oracle-retry-test").concurrency_limit == 1
    assert components.oracle.calls == 5  # 3 candidates, 2 of them retried once
    with CandidateStore(store_url) as store:
        assert store.count(CandidateFilter(campaign=config.name, status=["evaluated", "failed"])) == 3
    close_stores()


def test_failed_flow_resumes_without_losing_or_duplicating(prefect_server, replay_campaign, tmp_path):
    config = replay_campaign("flaky-resume")
    cut_url, clean_url = f"sqlite:///{tmp_path / 'cut.db'}", f"sqlite:///{tmp_path / 'clean.db'}"
    settings = FlowSettings(artifacts=False, runner={"kind": "threads", "max_workers": 1}, **FAST)
    components = build_components(config)
    # iteration 1's second oracle call fails twice: past its one retry, so the flow run fails
    components.oracle = FlakyOracle(components.oracle, fail_on={5, 6})
    install_components(config, components)
    try:
        failed = campaign_flow(config, store_url=cut_url, settings=settings, return_state=True)
    finally:
        uninstall_components(config)
    assert failed.is_failed()
    with CandidateStore(cut_url) as store:
        assert [r.finished_at is not None for r in store.iterations(config.name)] == [True, False]
        assert store.count(CandidateFilter(campaign=config.name, iteration=1, status=["evaluated"])) == 2
        assert store.count(CandidateFilter(campaign=config.name, iteration=1, status=["selected"])) == 1
    resumed = campaign_flow(config, store_url=cut_url, settings=settings, return_state=True)
    assert resumed.is_completed(), resumed.message
    assert resumed.result()[1].resumed
    campaign_flow(config, store_url=clean_url, settings=settings)
    cut, clean = _snapshot(cut_url, config.name), _snapshot(clean_url, config.name)
    assert cut == clean and len({c[0] for c in cut}) == len(cut)
    with CandidateStore(cut_url) as store:
        assert store.count(CandidateFilter(campaign=config.name, status=["evaluated", "failed"])) == 6
        for cid, _, _ in cut:
            statuses = [h.to_status for h in store.status_history(cid)]
            assert len(statuses) == len(set(statuses))
    close_stores()


def test_score_is_cached_on_structure_hashes(prefect_server, replay_campaign, store_url):
    from prefect import flow

    from crystaloop.flows import tasks
    from crystaloop.loop import campaign as engine

    config = replay_campaign("score-cache", budget={"iterations": 1, "candidates_per_iteration": 8, "oracle_calls_per_iteration": 2})

    @flow
    def score_twice():  # noqa: ANN202
        store = store_for(store_url)
        run = engine.begin_iteration(store, config, 0)
        tasks.step("generate", config, store_url, run)
        pending = [c.id for c in iteration_candidates(store, config.name, 0, [CandidateStatus.GENERATED])]
        cached = tasks.score.with_options(cache_key_fn=tasks.score_cache_key, persist_result=True)
        return cached(config, store_url, 0, pending, return_state=True), cached(config, store_url, 0, pending, return_state=True)

    first, second = score_twice()
    assert first.is_completed() and first.name == "Completed"
    assert second.name == "Cached"
    assert second.result().predictions == first.result().predictions and first.result().predictions
    # the scoring surrogate is refitted on new labels: another iteration or campaign never reuses a score
    ids = sorted(first.result().predictions)
    key = tasks.score_cache_key(None, {"config": config, "index": 0, "pending_ids": ids})
    assert key == tasks.score_cache_key(None, {"config": config, "index": 0, "pending_ids": list(reversed(ids))})
    assert key != tasks.score_cache_key(None, {"config": config, "index": 1, "pending_ids": ids})
    other = config.model_copy(update={"name": "score-cache-other"})
    assert key != tasks.score_cache_key(None, {"config": other, "index": 0, "pending_ids": ids})
    close_stores()


@pytest.mark.slow
def test_dask_task_runner_runs_oracle_calls_on_a_local_cluster(prefect_server, replay_campaign, tmp_path):
    config = replay_campaign("dask-run", budget={"iterations": 1, "candidates_per_iteration": 12, "oracle_calls_per_iteration": 4})
    url, direct_url = f"sqlite:///{tmp_path / 'dask.db'}", f"sqlite:///{tmp_path / 'direct.db'}"
    settings = FlowSettings(artifacts=False, runner={"kind": "dask", "n_workers": 2, "processes": True}, **FAST)
    state = campaign_flow(config, store_url=url, settings=settings, return_state=True)
    assert state.is_completed(), state.message
    with CandidateStore(direct_url) as store:
        run_campaign(build_components(config), store, config)
    assert _snapshot(url, config.name) == _snapshot(direct_url, config.name)
    close_stores()


def test_a_step_added_to_the_engine_table_runs_in_the_flow_too(prefect_server, replay_campaign, tmp_path, monkeypatch):
    """Issue 20: the flow re-sequenced the engine by hand, so every new step was written twice.
    Both now run ITERATION_STEPS; a step inserted there runs in `run_iteration` and, as a task of
    its own name, in the flow, between the same neighbours."""
    from crystaloop.loop import campaign as engine

    seen: list[tuple[str, int, str]] = []

    def audit(components, store, config, run):  # noqa: ANN001, ANN202 - a step's signature
        statuses = sorted({c.status.value for c in iteration_candidates(store, config.name, run.index)})
        seen.append((config.name, run.index, ",".join(statuses)))

    table = list(engine.ITERATION_STEPS)
    table.insert([s.name for s in table].index("select"), engine.Step("audit", audit))
    monkeypatch.setattr(engine, "ITERATION_STEPS", tuple(table))
    monkeypatch.setattr("crystaloop.flows.campaign.ITERATION_STEPS", tuple(table))
    config = replay_campaign("step-table", budget={"iterations": 1, "candidates_per_iteration": 8, "oracle_calls_per_iteration": 2})
    with CandidateStore(f"sqlite:///{tmp_path / 'direct.db'}") as store:
        run_campaign(build_components(config), store, config)
    state = campaign_flow(config, store_url=f"sqlite:///{tmp_path / 'flow.db'}", settings=FlowSettings(**FAST), return_state=True)
    assert state.is_completed(), state.message
    # after guard, before select: candidates are scored or rejected, none selected yet
    assert len(seen) == 2 and seen[0] == seen[1] and "selected" not in seen[0][2] and "generated" not in seen[0][2]
    _, children, task_runs, _, _ = asyncio.run(_runs_and_artifacts(state.state_details.flow_run_id))
    assert "audit-0" in [t.name for t in task_runs]
    assert _snapshot(f"sqlite:///{tmp_path / 'flow.db'}", config.name) == _snapshot(f"sqlite:///{tmp_path / 'direct.db'}", config.name)
    close_stores()
