"""A local Prefect server (API + UI) for campaigns: environment, start-up, health wait.

The server listens on loopback by default, keeps its SQLite database under ``PREFECT_HOME``
(PostgreSQL when ``database_url`` is given; it becomes Prefect's own
``PREFECT_API_DATABASE_CONNECTION_URL``), and never phones home (analytics off). On a 2-core
machine it answers ``/api/health`` after 10–20 s; :func:`wait_until_healthy` waits up to
:data:`STARTUP_TIMEOUT_S`, far past that, and fails early, with the server's own output, if the
process dies.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from crystaloop.data.errors import CrystaloopError

__all__ = ["ServerSettings", "STARTUP_TIMEOUT_S", "server_environment", "start_server", "wait_until_healthy", "client_environment"]

logger = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 180.0
"""Seconds to wait for ``/api/health`` (measured 10–20 s on 2 shared cores; margin for load)."""


class ServerSettings(BaseModel):
    """Where and how the local Prefect server runs.

    Attributes:
        host: interface (``127.0.0.1``: nothing outside this machine can reach it).
        port: TCP port of the API and the UI.
        home: ``PREFECT_HOME`` (database, logs); ``None`` → Prefect's default ``~/.prefect``.
        database_url: ``postgresql+asyncpg://user:pw@host/db`` for PostgreSQL; ``None`` → SQLite
            under ``home``.
        services: run the scheduler and the other background services (needed for schedules).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(4200, ge=1, le=65535)
    home: str | None = None
    database_url: str | None = None
    services: bool = True

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.port}"


def server_environment(settings: ServerSettings, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the server process: ``base`` (default ``os.environ``) plus its settings."""
    env = dict(os.environ if base is None else base)
    env.update(
        PREFECT_SERVER_API_HOST=settings.host,
        PREFECT_SERVER_API_PORT=str(settings.port),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_API_URL=settings.api_url,
    )
    env.pop("PREFECT_API_URL", None)  # the server itself is no client of another server
    if settings.home:
        env["PREFECT_HOME"] = str(Path(settings.home).expanduser())
    if settings.database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = settings.database_url
    return env


def client_environment(settings: ServerSettings) -> dict[str, str]:
    """Variables a client (a flow run, ``crystaloop campaign deploy``) needs to use the server."""
    return {"PREFECT_API_URL": settings.api_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def _prefect_executable() -> str:
    beside = Path(sys.executable).with_name("prefect")
    if beside.exists():
        return str(beside)
    found = shutil.which("prefect")
    if found is None:
        raise CrystaloopError(f"no 'prefect' command beside {sys.executable} or on PATH; install prefect>=3")
    return found


def start_server(settings: ServerSettings, log_path: Path | None = None) -> subprocess.Popen:
    """Launch ``prefect server start`` (not waiting for it); output goes to ``log_path``."""
    if settings.home:
        Path(settings.home).expanduser().mkdir(parents=True, exist_ok=True)
    command = [_prefect_executable(), "server", "start", "--host", settings.host, "--port", str(settings.port)]
    if not settings.services:
        command.append("--no-services")
    out = open(log_path, "ab") if log_path is not None else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    logger.info("starting Prefect server: %s", " ".join(command))
    return subprocess.Popen(command, env=server_environment(settings), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=5) as response:  # noqa: S310 - loopback URL we built
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_until_healthy(settings: ServerSettings, process: subprocess.Popen | None = None, timeout: float = STARTUP_TIMEOUT_S, log_path: Path | None = None) -> float:
    """Poll ``/api/health`` until it answers; returns the seconds waited.

    Raises:
        CrystaloopError: the process ended first, or ``timeout`` passed (with the log's tail).
    """
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if _healthy(settings.api_url):
            return time.monotonic() - started
        if process is not None and process.poll() is not None:
            raise CrystaloopError(f"the Prefect server exited with code {process.returncode} before answering{_tail(log_path)}")
        time.sleep(0.5)
    raise CrystaloopError(f"the Prefect server at {settings.api_url} did not answer /health within {timeout:.0f} s{_tail(log_path)}")


def _tail(log_path: Path | None, chars: int = 2000) -> str:
    if log_path is None or not log_path.exists():
        return ""
    return "; its output ends:\n" + log_path.read_text(errors="replace")[-chars:]
