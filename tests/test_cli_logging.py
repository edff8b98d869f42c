"""The command line's log (commands/logs.py): third-party warnings and chatter into the log, not
the terminal, at default verbosity; ``-v`` shows them; Prefect's state lines become one line per
finished campaign step."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import crystaloop
from crystaloop.commands.logs import PrefectStepFilter, configure_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logging.captureWarnings(False)  # pytest's own warning capture may have replaced showwarning since
    yield
    logging.captureWarnings(False)
    root.handlers[:], _ = saved[0], root.setLevel(saved[1])


def _fake_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN202 - the module
    (tmp_path / "fakelib_noisy.py").write_text(
        "import logging, warnings\n"
        "def noisy(text):\n"
        "    warnings.warn(text, UserWarning)\n"
        "def chatty(text):\n"
        "    logging.getLogger('fakelib_noisy').warning(text)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import fakelib_noisy

    return fakelib_noisy


def test_third_party_warnings_go_to_the_log_not_stderr(tmp_path, monkeypatch, capsys, caplog) -> None:
    library = _fake_library(tmp_path, monkeypatch)
    configure_logging(verbose=False)
    logging.getLogger().addHandler(caplog.handler)  # the test's view of the log
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        library.noisy("fakelib warns at default verbosity")
        library.chatty("fakelib logs a warning")
        warnings.warn_explicit("crystaloop's own warning", UserWarning, str(Path(crystaloop.__file__).parent / "somewhere.py"), 1)
        logging.getLogger("crystaloop.somewhere").warning("crystaloop's own log warning")
    err = " ".join(capsys.readouterr().err.split())
    assert "fakelib warns" not in err and "fakelib logs" not in err
    logged = [r.getMessage() for r in caplog.records]
    assert any("fakelib warns at default verbosity" in m for m in logged) and "fakelib logs a warning" in logged
    assert "crystaloop's own warning" in err and "crystaloop's own log warning" in err

    configure_logging(verbose=True)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        library.noisy("fakelib warns under -v")
        library.chatty("fakelib logs under -v")
    err = " ".join(capsys.readouterr().err.split())  # the log wraps at the console width
    assert "fakelib warns under -v" in err and "fakelib logs under -v" in err


def test_default_verbosity_turns_library_progress_bars_off(monkeypatch) -> None:
    from crystaloop.commands.logs import LIBRARY_QUIET_ENV

    for key in LIBRARY_QUIET_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("TQDM_DISABLE", "0")  # a user's own choice is kept
    configure_logging(verbose=False)
    import os

    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1" and os.environ["SPGLIB_WARNING"] == "OFF" and os.environ["TQDM_DISABLE"] == "0"


def _record(message: str, name: str = "prefect.task_runs", **extra: str) -> logging.LogRecord:
    record = logging.LogRecord(name, logging.INFO, __file__, 1, message, (), None)
    record.__dict__.update(extra)
    return record


def test_prefect_state_lines_become_one_line_per_finished_step() -> None:
    quiet = PrefectStepFilter()
    step = _record("Finished in state Completed()", task_run_name="generate-0", task_name="generate", flow_run_name="c-iteration-0")
    assert quiet.filter(step) and step.getMessage() == "generate-0 done"
    oracle = _record("Finished in state Completed()", task_run_name="oracle-1a2b", task_name="oracle")
    assert quiet.filter(oracle) and oracle.getMessage() == "oracle-1a2b done"  # the slow fan-out shows its progress
    assert not quiet.filter(_record("Finished in state Completed()", task_run_name="update-1a2b", task_name="update"))
    failed = _record("Finished in state Failed('oracle crashed')", task_run_name="oracle-1a2b", task_name="oracle")
    assert quiet.filter(failed) and failed.getMessage() == "oracle-1a2b: Finished in state Failed('oracle crashed')"
    assert not quiet.filter(_record("Finished in state Completed()", "prefect.flow_runs", flow_run_name="c-iteration-0"))
    crashed = _record("Finished in state Crashed('killed')", "prefect.flow_runs", flow_run_name="c")
    assert quiet.filter(crashed) and crashed.getMessage().startswith("c: Finished in state Crashed")
    assert not quiet.filter(_record("Beginning subflow run 'c-iteration-1' for flow 'campaign-iteration'", "prefect.flow_runs"))
    assert quiet.filter(_record("iteration 0: 16 generated, 3 evaluated", "prefect.flow_runs", flow_run_name="c-iteration-0"))


@pytest.mark.parametrize("args", [["campaign", "pause", "nightly"], ["campaign", "resume", "nightly"],
                                  ["campaign", "trigger", "nightly"]])
def test_every_prefect_command_takes_the_log_back_after_importing_prefect(args, monkeypatch) -> None:
    """Importing Prefect replaces the root logger's handlers; each command that talks to Prefect puts
    the command line's log back (so -v and the quiet default hold) before it does anything."""
    from typer.testing import CliRunner

    import crystaloop.commands.logs as logs
    import crystaloop.flows.deploy as deploy
    from crystaloop.cli import app

    calls: list[str] = []
    monkeypatch.setattr(logs, "adopt_prefect_logging", lambda: calls.append("adopted"))
    monkeypatch.setattr(deploy, "set_paused", lambda name, paused: calls.append(f"paused={paused}"))

    class _Run:
        id, name, state = "run-id", "nightly-run", None

    monkeypatch.setattr(deploy, "trigger", lambda *a, **k: calls.append("triggered") or _Run())
    result = CliRunner().invoke(app, args)
    assert calls and calls[0] == "adopted" and len(calls) == 2, (calls, result.output)


def test_a_third_party_warning_relayed_by_a_prefect_task_logger_stays_in_the_log() -> None:
    """Prefect's task-run logger relays a warning raised inside a task (CHGNet's in the demo) as its own
    WARNING record; the quiet filter drops it unless crystaloop raised it, and keeps Prefect's own warnings."""
    from crystaloop.commands.logs import QuietFilter

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("prefect.task_runs", logging.WARNING, __file__, 1, message, (), None)

    quiet = QuietFilter()
    assert not quiet.filter(record("/venv/site-packages/chgnet/model/model.py:898: UserWarning: Converting a tensor"))
    inside = Path(crystaloop.__file__).parent / ".venv" / "lib" / "python3.11" / "site-packages" / "chgnet" / "model.py"
    assert not quiet.filter(record(f"{inside}:898: UserWarning: a .venv inside the checkout is not crystaloop"))
    ours = str(Path(crystaloop.__file__).parent / "loop" / "campaign.py")
    assert quiet.filter(record(f"{ours}:12: UserWarning: a crystaloop warning"))
    assert quiet.filter(record("Task run 'oracle-1' received a retry"))
