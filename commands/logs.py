"""The command line's log: one stderr log, quiet at default verbosity, everything with ``-v``.

:func:`configure_logging` (the CLI's callback, before any command) installs it:

* crystaloop's own warnings and errors on stderr; debug logs with ``-v``;
* warnings of third-party libraries (``warnings.warn`` in spglib's, pymatgen's, CHGNet's or
  torch's code, routed into logging by :func:`logging.captureWarnings`) and their log records
  below ERROR go to the log at debug level: shown with ``-v``, hidden otherwise;
* library progress bars (Hugging Face tokenizers and model loading, tqdm) and spglib's C-level
  warnings (printed to stderr past Python) off unless ``-v`` (:data:`LIBRARY_QUIET_ENV`).

Prefect replaces the root logger's handlers when it is imported (its ``logging.yml``), so the
commands that run flows call :func:`adopt_prefect_logging` after importing it: the log above comes
back, and Prefect's records pass through :class:`PrefectStepFilter`, one line per finished
campaign step instead of a ``Finished in state Completed()`` line per task and flow run.
Nothing here runs at import time.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

__all__ = ["configure_logging", "adopt_prefect_logging", "PrefectStepFilter", "QuietFilter", "LIBRARY_QUIET_ENV"]

_PACKAGE = str(Path(__file__).resolve().parent.parent)
_STATE = re.compile(r"^Finished in state (\w+)")
_WARNING_TEXT = re.compile(r"^\S+\.py:\d+: \w*Warning: ")  # how captureWarnings formats a warning

LIBRARY_QUIET_ENV = {
    "SPGLIB_WARNING": "OFF",  # spglib's C library prints its warnings straight to stderr, out of logging's reach
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # huggingface_hub downloads and loads
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "TOKENIZERS_PARALLELISM": "false",  # the tokenizers fork warning
    "TQDM_DISABLE": "1",  # sentence-transformers' encode bar and other tqdm bars
}
"""Environment that silences the libraries' progress bars at default verbosity (set only where
the user has not set the variable)."""

_verbose = False


class QuietFilter(logging.Filter):
    """The stderr handler's filter at default verbosity: crystaloop's records at WARNING and above,
    other libraries' at ERROR and above, Prefect's through :class:`PrefectStepFilter`, and
    warnings captured from third-party code (``py.warnings``) not at all (``-v`` shows them)."""

    def __init__(self) -> None:
        super().__init__()
        self.prefect = PrefectStepFilter()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "py.warnings" or _WARNING_TEXT.match(record.getMessage()):
            return _raised_in_crystaloop(record)  # Prefect's task-run loggers relay warnings raised in tasks too
        if record.name.startswith("prefect"):
            return self.prefect.filter(record)
        if record.name.startswith("crystaloop"):
            return record.levelno >= logging.WARNING
        return record.levelno >= logging.ERROR


def _raised_in_crystaloop(record: logging.LogRecord) -> bool:
    """True for a captured warning whose ``warnings.warn`` call sits in crystaloop's own code
    (``captureWarnings`` puts the warning's ``file:line: Category: message`` in the record)."""
    source = record.getMessage().split(":", 1)[0]
    # the repository root is the package, so a virtual environment inside the checkout (.venv) shares its prefix
    return source.startswith(_PACKAGE + os.sep) and "site-packages" not in Path(source).parts


class PrefectStepFilter(logging.Filter):
    """Prefect's console chatter reduced to one line per finished campaign step.

    A task run of a campaign step (the names of :data:`crystaloop.loop.campaign.ITERATION_STEPS`)
    or an oracle call of the evaluate step's fan-out (:func:`crystaloop.flows.tasks.measure`, the
    slow part) that finishes Completed reads ``<task run> done`` (``generate-0 done``); other
    completed tasks (the per-candidate updates), completed flow runs (the flow logs its own summary
    line) and the ``Beginning subflow run`` lines are dropped; every other state (Failed, Crashed, a
    retry) and every other record at INFO and above is kept, named after its run. Rewrites the
    record it passes, so it belongs on a console handler, never on Prefect's API handler (the UI
    keeps its log).
    """

    def __init__(self) -> None:
        super().__init__()
        self._steps: set[str] | None = None

    def steps(self) -> set[str]:
        """The task names that get a line: the engine's steps and the flow's oracle call (read once)."""
        if self._steps is None:
            from crystaloop.flows.tasks import measure
            from crystaloop.loop.campaign import ITERATION_STEPS

            self._steps = {step.name for step in ITERATION_STEPS} | {measure.name}
        return self._steps

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.INFO:
            return False
        message = record.getMessage()
        task_run = getattr(record, "task_run_name", None)
        flow_run = getattr(record, "flow_run_name", None)
        state = _STATE.match(message)
        if message.startswith("Beginning subflow run"):
            return False
        if state is None:
            return True
        completed = state.group(1) in ("Completed", "Cached")
        if task_run is not None:
            if completed and getattr(record, "task_name", None) not in self.steps():
                return False
            record.msg, record.args = (f"{task_run} done" if completed else f"{task_run}: {message}"), ()
            return True
        if completed:
            return False
        record.msg, record.args = f"{flow_run or 'flow run'}: {message}", ()
        return True


def configure_logging(verbose: bool = False) -> None:
    """Install the command line's stderr log (see the module docstring); ``verbose`` is ``-v``."""
    from rich.logging import RichHandler

    from crystaloop.commands.common import err_console

    global _verbose
    _verbose = verbose
    handler = RichHandler(console=err_console, show_path=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    if not verbose:
        handler.addFilter(QuietFilter())
        for key, value in LIBRARY_QUIET_ENV.items():
            os.environ.setdefault(key, value)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.captureWarnings(True)


def adopt_prefect_logging() -> None:
    """After ``import prefect``: the command line's log back on the root logger (Prefect's import
    replaced it with its own console handler), Prefect's INFO records through it (step lines)."""
    configure_logging(_verbose)
    logging.getLogger("prefect").setLevel(os.environ.get("PREFECT_LOGGING_LEVEL", "INFO").upper())
