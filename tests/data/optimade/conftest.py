"""A small store of known crystals with known records, on SQLite and on PostgreSQL.

Seven reference cells (``crystaloop.data.store.testing.base_cells``) with statuses, campaigns,
measurements, predictions and verdicts chosen so that every filter of the tests has a known
answer, written out in :data:`KNOWN`.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from crystaloop.data.records import Candidate, CandidateStatus, Measurement, Provenance, Verdict
from crystaloop.data.store import CandidateStore
from crystaloop.data.store.testing import base_cells

# name → (status, campaign, iteration)
KNOWN: dict[str, tuple[str, str | None, int | None]] = {
    "NaCl": ("imported", None, None),
    "MgO": ("rejected", "c1", 1),
    "SrTiO3": ("evaluated", "c1", 0),
    "BaTiO3": ("evaluated", "c1", 1),
    "SrZrO3": ("scored", "c2", 0),
    "C": ("failed", "c2", 1),
    "Si": ("generated", "c2", 1),
}
NAMES = frozenset(KNOWN)
_PATHS = {
    "imported": (),
    "generated": (),
    "rejected": ("rejected",),
    "scored": ("scored",),
    "evaluated": ("scored", "selected", "evaluated"),
    "failed": ("scored", "selected", "failed"),
}


@dataclass(frozen=True)
class KnownStore:
    """URL of a populated store and the candidate id of each reference cell."""

    url: str
    ids: dict[str, str]

    def names(self, ids: list[str] | set[str]) -> set[str]:
        by_id = {v: k for k, v in self.ids.items()}
        return {by_id[i] for i in ids}


SRTIO3_HULL = {
    "basis": {"elements": 3, "prototype": 12, "known": 0, "campaign": 1},
    "coverage": "prototype",
    "decomposition": [
        {"formula": "SrO", "fraction": 0.4, "source": "prototype:rocksalt"},
        {"formula": "TiO2", "fraction": 0.6, "source": "prototype:rutile"},
    ],
    "hull_energy_per_atom": -8.1,
}
"""Details of SrTiO3's chgnet e_above_hull (the smallest of its two, so the one the API shows)."""


def populate(url: str) -> dict[str, str]:
    """Write the reference cells and their records into the store at ``url``; name → id."""
    cells = base_cells()
    ids: dict[str, str] = {}
    with CandidateStore(url) as store:
        for name, (status, campaign, iteration) in KNOWN.items():
            initial = CandidateStatus.IMPORTED if status == "imported" else CandidateStatus.GENERATED
            provenance = Provenance(component="optimade-tests", seed=0, campaign=campaign, iteration=iteration)
            candidate = Candidate(crystal=cells[name], provenance=provenance, status=initial)
            store.add(candidate)
            ids[name] = candidate.id
            for step in _PATHS[status]:
                store.update_status(candidate.id, step)
        hull = "e_above_hull"
        store.record(
            ids["SrTiO3"],
            measurements=[
                Measurement(oracle="chgnet", property=hull, value=0.01, units="eV/atom", details=SRTIO3_HULL),
                Measurement(oracle="sevennet", property=hull, value=0.2, units="eV/atom", details={"coverage": "elements"}),
            ],
            verdicts=[Verdict(guard="smact", ok=True)],
            predictions={"band_gap": (1.5, 0.2, "eV")},
            model="m1",
        )
        store.record(
            ids["BaTiO3"],
            measurements=[Measurement(oracle="chgnet", property=hull, value=0.08, units="eV/atom")],
            verdicts=[Verdict(guard="smact", ok=True)],
        )
        store.record(ids["SrZrO3"], predictions={"band_gap": (3.0, 0.5, "eV")}, model="m1")
        store.record(
            ids["MgO"],
            verdicts=[Verdict(guard="smact", ok=False, reason="not charge balanced"), Verdict(guard="min_distance", ok=True, score=2.1)],
        )
        store.record(
            ids["C"],
            measurements=[Measurement(oracle="chgnet", property=hull, value=None, status="failed", reason="diverged")],
        )
    return ids


@pytest.fixture
def known_store(store_url: str) -> KnownStore:
    """The reference store on each backend (SQLite file, fresh PostgreSQL schema)."""
    return KnownStore(store_url, populate(store_url))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def serve():
    """Start ``crystaloop serve`` on a free loopback port for a store URL; yields a starter."""
    import requests

    processes: list[tuple[subprocess.Popen, Any]] = []

    def start(url: str) -> str:
        port = free_port()
        log = tempfile.TemporaryFile()
        process = subprocess.Popen(
            [sys.executable, "-m", "crystaloop.cli", "serve", "--port", str(port), "--store", url],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        processes.append((process, log))
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"crystaloop serve exited with {process.returncode}: {log.read().decode()[-2000:]}")
            try:
                if requests.get(f"{base}/v1/info", timeout=2).status_code == 200:
                    return base
            except requests.ConnectionError:
                time.sleep(0.2)
        raise RuntimeError("crystaloop serve did not answer within 60 s")

    yield start
    for process, log in processes:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
def client(known_store: KnownStore) -> Iterator:
    """An in-process HTTP client of the app over the reference store."""
    from fastapi.testclient import TestClient

    from crystaloop.data.optimade.app import create_app

    with TestClient(create_app(known_store.url)) as test_client:
        yield test_client
