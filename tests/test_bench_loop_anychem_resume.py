"""bench_loop_anychem resumes an interrupted run: the phase build is done once, each campaign keeps its
oracle cache and store (``run_campaign`` reads finished iterations back from the store; tested in
tests/loop/test_campaign.py), and changed settings get a different folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # noqa: ANN201 - the module
    if str(ROOT) not in sys.path:
        monkeypatch.syspath_prepend(str(ROOT))
    import benchmarks.bench_loop_anychem as module

    monkeypatch.chdir(tmp_path)
    return module


def test_an_interrupted_run_resumes_without_rebuilding_or_overwriting(bench, monkeypatch: pytest.MonkeyPatch) -> None:
    from crystaloop.loop.report import IterationReport

    builds: list[Path] = []
    campaigns: list[str] = []
    interrupt_at = {"count": 4}

    def build_phases(cache: Path, quick: bool) -> None:
        builds.append(cache)
        cache.write_bytes(b"phases")

    def run_campaign(components, store, config):  # noqa: ANN001, ANN202 - the stand-in for loop.campaign.run_campaign
        if len(campaigns) == interrupt_at["count"]:
            raise KeyboardInterrupt
        cache = Path(config.oracle.cache_url.removeprefix("sqlite:///"))
        with cache.open("ab") as handle:  # what the campaign relaxed goes into its own cache
            handle.write(b"+relaxed")
        campaigns.append(config.name)
        return [IterationReport(campaign=config.name, iteration=0, config_hash="h", seconds=2.0)]

    monkeypatch.setattr(bench, "_build_phases", build_phases)
    monkeypatch.setattr(bench, "build_components", lambda config: None)
    monkeypatch.setattr(bench, "run_campaign", run_campaign)

    with pytest.raises(KeyboardInterrupt):
        bench.run(quick=True)
    assert len(builds) == 1 and len(campaigns) == 4
    interrupt_at["count"] = -1
    rows = bench.run(quick=True)
    assert len(builds) == 1, "the finished phase build is not repeated"
    folder = bench.folder_for(quick=True)
    caches = sorted(folder.glob("oracle-*.db"))
    assert len(caches) == len(bench.ARMS) * len(bench._sizes(True)["seeds"])
    for cache in caches:  # each holds the phases and what its campaign relaxed: never copied over again
        assert cache.read_bytes().startswith(b"phases+relaxed")
    assert [row["seconds"] for row in rows[1:]] == [4.0] * len(bench.ARMS)

    bench.run(quick=True, fresh=True)
    assert len(builds) == 2, "fresh=True starts over"


def test_settings_are_part_of_the_folder(bench) -> None:
    assert bench.folder_for(quick=True) != bench.folder_for(quick=False)
    assert bench.folder_for(quick=True) == bench.folder_for(quick=True)
