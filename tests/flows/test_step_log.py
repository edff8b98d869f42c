"""A tiny real flow through the command line's log: no ``Finished in state`` lines at default
verbosity, one ``<step>-<i> done`` line per finished campaign step; ``-v`` keeps Prefect's lines."""

from __future__ import annotations

import logging

import pytest
from prefect import flow, task

from crystaloop.commands.logs import adopt_prefect_logging, configure_logging

pytestmark = pytest.mark.slow


@task(name="generate", task_run_name="generate-{index}")
def _generate(index: int) -> int:
    return index


@task(name="update", task_run_name="update-{index}")
def _update(index: int) -> int:
    return index * 2


@flow(name="tiny-campaign")
def _tiny() -> int:
    return sum(_update(_generate(i)) for i in range(2))


def _run(verbose: bool, capsys: pytest.CaptureFixture[str]) -> str:
    root = logging.getLogger()
    saved = root.handlers[:], root.level, logging.getLogger("prefect").level
    try:
        configure_logging(verbose)
        adopt_prefect_logging()
        assert _tiny() == 2
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.getLogger("prefect").setLevel(saved[2])
    return " ".join(capsys.readouterr().err.split())


def test_default_verbosity_prints_one_line_per_finished_step(prefect_server, capsys) -> None:
    quiet = _run(False, capsys)
    assert "Finished in state" not in quiet
    assert "generate-0 done" in quiet and "generate-1 done" in quiet
    assert "update-0" not in quiet  # per-candidate bookkeeping tasks are parts of a step
    detailed = _run(True, capsys)
    assert detailed.count("Finished in state Completed()") >= 5  # 4 task runs and the flow run
