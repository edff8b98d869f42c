"""The Prefect UI, loaded by headless Chromium on loopback, shows a campaign's flow run and its
artifact with the unit-cell pictures of the best evaluated structures.

Chromium is the Debian package ``chromium`` (``make test`` installs it when missing and it can);
without it the test skips, except under ``CI=true`` where it fails. The screenshots land in the
test's temporary folder, and also in ``$CRYSTALOOP_UI_SCREENSHOTS`` when that variable names a
folder (``prefect-ui-flow-run.png``, ``prefect-ui-top-structures.png``); the copies the docs show
are made with ``CRYSTALOOP_UI_SCREENSHOTS=docs/images pytest tests/flows/test_ui_browser.py``.
``$CRYSTALOOP_UI_SCREENSHOT`` (one file, the flow-run page) still works
(``benchmarks/figures/prefect-ui-flow-run.png`` was made that way).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from crystaloop.flows.campaign import campaign_flow
from crystaloop.flows.config import FlowSettings, RetrySettings
from crystaloop.flows.runtime import close_stores

pytestmark = pytest.mark.slow

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed; `make test` installs the Debian package `chromium`")
        pytest.skip("chromium is not installed (Debian package `chromium`; `make test` installs it as root)")
    return path


def _headless(chromium: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium; the virtual time budget lets the single-page app fetch and render."""
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--window-size=1400,900", "--virtual-time-budget=20000", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


def _screenshot(chromium: str, page: str, shot: Path) -> None:
    """A PNG of ``page`` at ``shot`` (a rendered page, not a blank frame), copied to
    ``$CRYSTALOOP_UI_SCREENSHOTS`` when set."""
    result = _headless(chromium, f"--screenshot={shot}", page)
    assert result.returncode == 0 and shot.read_bytes()[:8] == PNG_MAGIC, result.stderr[-2000:]
    assert shot.stat().st_size > 20_000
    if folder := os.environ.get("CRYSTALOOP_UI_SCREENSHOTS"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(folder) / shot.name)


def test_prefect_ui_shows_the_campaign_flow_run(prefect_server, replay_campaign, tmp_path):
    chromium = _chromium()
    config = replay_campaign("ui-visible", budget={"iterations": 1, "candidates_per_iteration": 8, "oracle_calls_per_iteration": 2})
    fast = RetrySettings(retries=0, backoff_s=0.0, jitter=0.0)
    settings = FlowSettings(report_dir=str(tmp_path / "figures"), oracle_retries=fast, io_retries=fast)
    state = campaign_flow(config, store_url=f"sqlite:///{tmp_path / 'ui.db'}", settings=settings, return_state=True)
    close_stores()
    assert state.is_completed(), state.message

    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
        flow = client.read_flow(run.flow_id)
        pictures = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["ui-visible-top-structures"])))
    page = f"{prefect_server.ui_url.rstrip('/')}/runs/flow-run/{run.id}"

    dom = _headless(chromium, "--dump-dom", page)
    assert dom.returncode == 0, dom.stderr[-2000:]
    # rendered by the app's JavaScript from the API, not present in the static index.html
    assert run.name in dom.stdout, f"flow run {run.name!r} not rendered at {page}"
    assert flow.name in dom.stdout and "Completed" in dom.stdout
    assert f"campaign {config.name}:" in dom.stdout  # the flow's own log line, rendered in the run's Logs tab

    shot = tmp_path / "prefect-ui-flow-run.png"
    _screenshot(chromium, page, shot)
    if target := os.environ.get("CRYSTALOOP_UI_SCREENSHOT"):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)

    # the artifact page of the unit-cell pictures: the markdown's images rendered as <img> elements
    assert len(pictures) == 1, [a.key for a in pictures]
    artifact_page = f"{prefect_server.ui_url.rstrip('/')}/artifacts/artifact/{pictures[0].id}"
    dom = _headless(chromium, "--dump-dom", artifact_page)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "best evaluated structures" in dom.stdout
    assert dom.stdout.count("<img") >= 2 and "data:image/png;base64," in dom.stdout, f"no pictures rendered at {artifact_page}"
    _screenshot(chromium, artifact_page, tmp_path / "prefect-ui-top-structures.png")
