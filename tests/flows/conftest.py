"""Fixtures of the flow tests: one real Prefect server per session on a free loopback port with
a temporary PREFECT_HOME (started by crystaloop.flows.server, as `crystaloop server start` does),
and small replay campaigns that run in seconds."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from crystaloop.loop.config import CampaignConfig

torch.set_num_threads(1)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A running Prefect server; the test process (and its children) are its clients."""
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, PREFECT_SERVER_ANALYTICS_ENABLED, temporary_settings

    from crystaloop.flows.server import ServerSettings, start_server, wait_until_healthy

    home = tmp_path_factory.mktemp("prefect-home")
    settings = ServerSettings(port=_free_port(), home=str(home / "server"))
    log = home / "server.log"
    process = start_server(settings, log_path=log)
    try:
        wait_until_healthy(settings, process, log_path=log)
        client_home = home / "client"
        saved = {k: os.environ.get(k) for k in ("PREFECT_API_URL", "PREFECT_HOME", "PREFECT_SERVER_ANALYTICS_ENABLED")}
        os.environ.update(PREFECT_API_URL=settings.api_url, PREFECT_HOME=str(client_home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
        updates = {PREFECT_API_URL: settings.api_url, PREFECT_HOME: str(client_home), PREFECT_SERVER_ANALYTICS_ENABLED: False}
        with temporary_settings(updates=updates):
            yield settings
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except Exception:  # noqa: BLE001
            process.kill()


def _replay_campaign(name: str, **overrides) -> CampaignConfig:
    """A replay campaign on perov_5/val: replay generator and oracle, the shipped heat_ref surrogate."""
    payload = {
        "name": name,
        "objectives": [{"property": "heat_ref", "goal": "minimise", "units": "eV", "threshold": -0.5}],
        "budget": {"iterations": 2, "candidates_per_iteration": 16, "oracle_calls_per_iteration": 3},
        "strategy": {"kind": "al", "acquisition": "ucb"},
        "generator": {"kind": "dataset-replay", "dataset": "perov_5/val"},
        "surrogates": [{"kind": "shipped", "name": "perov_5-heat_ref"}],
        "oracle": {"kind": "replay", "dataset": "perov_5/val", "measure": ["heat_ref"]},
    }
    payload.update(overrides)
    return CampaignConfig.model_validate(payload)


@pytest.fixture
def replay_campaign():  # noqa: ANN201
    """``replay_campaign(name, **overrides)`` → a small replay CampaignConfig."""
    return _replay_campaign


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"
