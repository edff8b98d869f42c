"""Suite-wide fixtures: no network except loopback, a private dataset cache, shared paths."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def _is_loopback(address: object) -> bool:
    if isinstance(address, str | bytes):  # AF_UNIX paths
        return True
    if not isinstance(address, tuple) or not address:
        return False
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _block_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse every socket connection that does not go to loopback (DESIGN.md: tests are offline)."""
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def guarded(method):
        def connect(self: socket.socket, address: object):
            if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
                raise OSError(f"network access blocked in tests: connection to {address!r} (only loopback allowed)")
            return method(self, address)

        return connect

    monkeypatch.setattr(socket.socket, "connect", guarded(original_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guarded(original_connect_ex))


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Parsed-dataset cache in a per-session temp folder, never the user's ~/.cache."""
    import os

    os.environ["CRYSTALOOP_CACHE_DIR"] = str(tmp_path_factory.mktemp("dataset-cache"))


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES
