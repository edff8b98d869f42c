"""Store URLs with a password never reach Prefect's stored parameters in clear (issue 22, problem 6).

A campaign flow run against PostgreSQL with a password in its URL completes (the run got the
real URL), and the parameters Prefect stored for it and for its iteration subflows show the URL
with ``***``; a deployment's parameters do too, and the serving process maps them back.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from crystaloop.data.errors import CrystaloopError
from crystaloop.flows.parameters import (
    URLS_ENV_VAR,
    deployment_store_url,
    redact_parameters,
    redacting,
    reveal_store_url,
)

PASSWORD = "pw-s3cret-22"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def test_redact_parameters_hides_every_password_and_keeps_the_rest() -> None:
    url = f"postgresql+psycopg://crystaloop:{PASSWORD}@db.example:5432/campaigns"
    params = {"store_url": url, "config": {"name": "c", "store_url": url, "budget": {"iterations": 2}}, "tags": [url, "x"], "n": 3}
    redacted = redact_parameters(params)
    assert PASSWORD not in json.dumps(redacted)
    assert redacted["store_url"] == "postgresql+psycopg://crystaloop:***@db.example:5432/campaigns"
    assert redacted["config"]["budget"] == {"iterations": 2} and redacted["n"] == 3 and redacted["tags"][1] == "x"
    assert redact_parameters("sqlite:///runs/a@b.db") == "sqlite:///runs/a@b.db"  # no password: unchanged


def test_deployment_urls_are_stored_redacted_and_revealed_in_the_serving_process(monkeypatch: pytest.MonkeyPatch, replay_campaign) -> None:
    from crystaloop.flows.deploy import build_deployment

    monkeypatch.delenv(URLS_ENV_VAR, raising=False)
    monkeypatch.delenv("CRYSTALOOP_DB_URL", raising=False)
    url = f"postgresql+psycopg://crystaloop:{PASSWORD}@db.example:5432/campaigns"
    config = replay_campaign("secret-deploy", store_url=url)
    deployment = build_deployment(config, name="secret")
    assert PASSWORD not in json.dumps(deployment.parameters, default=str)
    assert reveal_store_url(deployment.parameters["store_url"]) == url  # this process remembers it
    assert deployment_store_url("sqlite:///x.db") == "sqlite:///x.db"

    monkeypatch.delenv(URLS_ENV_VAR)
    with pytest.raises(CrystaloopError, match="password hidden.*CRYSTALOOP_DB_URL"):
        reveal_store_url(deployment.parameters["store_url"])
    monkeypatch.setenv("CRYSTALOOP_DB_URL", url)  # or the serving process's own store URL
    assert reveal_store_url(deployment.parameters["store_url"]) == url


def test_a_redacting_flow_serialises_redacted_parameters_and_its_copies_do_not() -> None:
    from prefect import flow

    @redacting
    @flow
    def echo(store_url: str) -> str:  # pragma: no cover - only serialised here
        return store_url

    url = f"postgresql://u:{PASSWORD}@h/db"
    assert echo.serialize_parameters({"store_url": url}) == {"store_url": "postgresql://u:***@h/db"}
    copy = echo.with_options(name="echo-copy")  # Prefect's copies are plain flows: wrap them again
    assert copy.serialize_parameters({"store_url": url}) == {"store_url": url}
    assert redacting(copy).serialize_parameters({"store_url": url}) == {"store_url": "postgresql://u:***@h/db"}


@pytest.fixture
def postgres_url_with_password():  # noqa: ANN201
    """A store URL with a password (ignored by the trust-auth test server) in a fresh schema."""
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN}: {exc}")
    schema = f"cl_{uuid.uuid4().hex[:16]}"
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    yield f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


async def _stored_parameters(flow_run_id) -> list[dict]:  # noqa: ANN001
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    async with get_client() as client:
        parent = await client.read_flow_run(flow_run_id)
        children = await client.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])))
    return [parent.parameters, *(c.parameters for c in children)]


@pytest.mark.postgres
def test_flow_run_parameters_stored_by_prefect_hold_no_password(prefect_server, replay_campaign, postgres_url_with_password, tmp_path) -> None:
    from crystaloop.data.store import CandidateFilter, CandidateStore
    from crystaloop.flows.campaign import campaign_flow
    from crystaloop.flows.config import FlowSettings
    from crystaloop.flows.runtime import close_stores

    url = postgres_url_with_password
    config = replay_campaign("secret-flow", store_url=url, budget={"iterations": 1, "candidates_per_iteration": 8, "oracle_calls_per_iteration": 2})
    state = campaign_flow(config, store_url=url, settings=FlowSettings(report_dir=str(tmp_path), artifacts=False), return_state=True)
    close_stores()
    assert state.is_completed(), state.message
    stored = asyncio.run(_stored_parameters(state.state_details.flow_run_id))
    assert len(stored) == 2  # the campaign run and its iteration subflow
    text = json.dumps(stored)
    assert PASSWORD not in text
    assert all(p["store_url"].startswith("postgresql+psycopg://postgres:***@127.0.0.1:5432/test") for p in stored)
    assert stored[0]["config"]["store_url"].startswith("postgresql+psycopg://postgres:***@")
    with CandidateStore(url) as store:  # the run itself reached the store with the real URL
        assert store.count(CandidateFilter(campaign="secret-flow")) == 8


@pytest.mark.postgres
def test_a_store_url_from_a_prefect_secret_block_is_in_no_stored_parameter(prefect_server, replay_campaign, postgres_url_with_password, tmp_path) -> None:
    """A run given only a Secret block's name reaches the store; Prefect stores the name, never the URL (not even redacted)."""
    from prefect.blocks.system import Secret

    from crystaloop.data.store import CandidateFilter, CandidateStore
    from crystaloop.flows.campaign import campaign_flow
    from crystaloop.flows.config import FlowSettings
    from crystaloop.flows.deploy import build_deployment
    from crystaloop.flows.runtime import close_stores

    url = postgres_url_with_password
    block = f"crystaloop-db-{uuid.uuid4().hex[:8]}"
    Secret(value=url).save(block)
    config = replay_campaign("secret-block", budget={"iterations": 1, "candidates_per_iteration": 8, "oracle_calls_per_iteration": 2})
    assert config.store_url is None
    state = campaign_flow(config, store_url_secret=block, settings=FlowSettings(report_dir=str(tmp_path), artifacts=False), return_state=True)
    close_stores()
    assert state.is_completed(), state.message
    stored = asyncio.run(_stored_parameters(state.state_details.flow_run_id))
    assert len(stored) == 2  # the campaign run and its iteration subflow
    text = json.dumps(stored)
    assert PASSWORD not in text and "127.0.0.1" not in text and "postgresql" not in text
    assert stored[0]["store_url_secret"] == block and stored[1]["store_url"] == f"prefect-secret:{block}"
    with CandidateStore(url) as store:
        assert store.count(CandidateFilter(campaign="secret-block")) == 8

    deployment = build_deployment(config, name="from-secret", store_url_secret=block)
    assert deployment.parameters["store_url"] is None and deployment.parameters["store_url_secret"] == block
    with pytest.raises(CrystaloopError, match="not both"):
        build_deployment(config, store_url=url, store_url_secret=block)
    with pytest.raises(CrystaloopError, match="no Prefect Secret block 'crystaloop-absent-block'"):
        reveal_store_url("prefect-secret:crystaloop-absent-block")
    with pytest.raises(CrystaloopError, match="not valid"):
        build_deployment(config, store_url_secret="Has Spaces")
