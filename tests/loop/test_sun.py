"""S.U.N. classification with real StructureMatcher matching on tiny crystals, and its reports."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from crystaloop.data.crystal import Crystal
from crystaloop.data.records import Candidate, CandidateStatus, Measurement, Provenance
from crystaloop.data.store import CandidateStore
from crystaloop.data.store.testing import perovskite, rock_salt
from crystaloop.data.testing import random_rotation, random_translation
from crystaloop.loop.campaign import iteration_candidates, run_campaign
from crystaloop.loop.components import build_components
from crystaloop.loop.config import CampaignConfig, SunConfig
from crystaloop.loop.guards import StructureIndex
from crystaloop.loop.sun import campaign_sun, classify_sun, imported_structures, stability

torch.set_num_threads(1)
CONFIG = SunConfig()


def hull(value: float | None, status: str = "ok", coverage: str | None = "prototype", prop: str = "e_above_hull") -> Measurement:
    details = {} if coverage is None else {"coverage": coverage}
    return Measurement(oracle="fake", property=prop, value=value, units="eV/atom", status=status, details=details)


def evaluated(crystal: Crystal, *measurements: Measurement, iteration: int = 0) -> Candidate:
    provenance = Provenance(component="test", campaign="sun", iteration=iteration)
    return Candidate(crystal=crystal, provenance=provenance, status=CandidateStatus.EVALUATED, measurements=measurements)


def moved(crystal: Crystal, seed: int, strain: float = 1.01) -> Crystal:
    """A rotated, translated and slightly strained copy: the same structure to StructureMatcher."""
    rng = np.random.default_rng(seed)
    copy = random_rotation(random_translation(crystal, rng), rng)
    return Crystal(copy.lattice * strain, copy.frac_coords, copy.numbers)


@pytest.fixture(scope="module")
def training() -> StructureIndex:
    index = StructureIndex()
    index.add(perovskite(4.00, "Ba", "Ti", "O"), "train:BaTiO3")
    index.add(rock_salt(4.21, "Mg", "O"), "train:MgO")
    return index


def test_stable_unique_novel_duplicate_and_training_copy(training):
    first = evaluated(perovskite(3.905, "Sr", "Ti", "O"), hull(0.05), iteration=0)
    copy = evaluated(moved(first.crystal, seed=1), hull(0.0), iteration=1)
    known = evaluated(moved(perovskite(4.00, "Ba", "Ti", "O"), seed=2), hull(0.0), iteration=1)
    assert copy.id != first.id  # not an exact duplicate: only the matcher can tell
    verdicts = {v.id: v for v in classify_sun([known, copy, first], [training], CONFIG)}
    assert [v.id for v in verdicts.values()] == [first.id, *sorted([copy.id, known.id])]  # evaluation order

    v = verdicts[first.id]
    assert (v.stable, v.unique, v.novel, v.sun) == (True, True, True, True)
    assert not v.stable_strict and not v.sun_strict  # 0.05 eV/atom > 0.0
    assert v.e_above_hull == pytest.approx(0.05) and v.coverage == "prototype"

    v = verdicts[copy.id]
    assert v.stable and v.novel and not v.unique and not v.sun
    assert any("not unique" in r and first.id in r for r in v.reasons)

    v = verdicts[known.id]
    assert v.stable and v.unique and not v.novel
    assert any("not novel" in r and "train:BaTiO3" in r for r in v.reasons)

    # earlier iterations make later ones duplicates without being classified themselves
    (only,) = classify_sun([copy], [], CONFIG, earlier=[first])
    assert only.id == copy.id and not only.unique and only.novel


@pytest.mark.parametrize(
    ("measurement", "coverage", "why"),
    [
        (hull(0.0, coverage="elements"), "elements", "elements only"),
        (hull(-0.3, coverage=None, prop="formation_energy_vs_elements"), "elements", "elements only"),
        (hull(0.0, status="unconverged"), "", "unconverged"),
        (hull(None, status="failed"), "", "failed"),
        (hull(0.2), "prototype", "0.2 eV/atom > 0.1"),
    ],
)
def test_not_a_stability_verdict(measurement, coverage, why):
    result = stability(evaluated(rock_salt(5.64), measurement), CONFIG)
    assert not result.stable and not result.stable_strict
    assert result.coverage == coverage and why in result.reason


def test_missing_coverage_counts_and_is_reported_unknown():
    result = stability(evaluated(rock_salt(5.64), hull(0.0, coverage=None)), CONFIG)
    assert result.stable and result.stable_strict and result.coverage == "unknown"


def test_config_rejects_unknown_keys_and_inverted_thresholds():
    with pytest.raises(ValidationError, match="stable_e_above_hul"):
        SunConfig.model_validate({"stable_e_above_hul": 0.1})
    with pytest.raises(ValidationError, match="0.2 eV/atom must not exceed stable_e_above_hull 0.1"):
        SunConfig(strict_e_above_hull=0.2)
    with pytest.raises(ValidationError, match="goal 'minimise'"):
        CampaignConfig.model_validate({"name": "x", "objectives": [{"property": "sun", "goal": "minimise"}]})
    config = CampaignConfig.model_validate({"name": "x", "objectives": [{"property": "sun", "goal": "maximise"}], "sun": {"stable_e_above_hull": 0.05}})
    assert config.sun.stable_e_above_hull == 0.05 and config.sun.strict_e_above_hull == 0.0


def test_imported_candidates_make_copies_not_novel(tmp_path):
    imported = Candidate(crystal=rock_salt(5.64), provenance=Provenance(component="data.import", source="nacl.cif id=1"), status=CandidateStatus.IMPORTED)
    with CandidateStore(f"sqlite:///{tmp_path / 's.db'}") as store:
        store.add(imported)
        index = imported_structures(store, ["NaCl", "MgO"])
    assert len(index) == 1
    (v,) = classify_sun([evaluated(moved(rock_salt(5.64), seed=3), hull(0.0))], [index], CONFIG)
    assert not v.novel and any("imported" in r and "nacl.cif" in r for r in v.reasons)


class HullOracle:
    """A fake oracle: e_above_hull in [0, 0.2) eV/atom from the crystal's hash, prototype coverage."""

    name = "fake-hull"
    properties = ("e_above_hull",)

    def evaluate(self, crystals: Sequence[Crystal]) -> list[Measurement]:
        return [hull((int(c.canonical_hash()[:6], 16) % 200) / 1000.0) for c in crystals]


def test_campaign_reports_sun_counts_and_uses_them_as_objective(tmp_path):
    from crystaloop.commands.campaign import print_reports
    from crystaloop.commands.common import Output, console

    config = CampaignConfig.model_validate({
        "name": "sun-campaign",
        "objectives": [{"property": "sun", "goal": "maximise"}],
        "budget": {"iterations": 2, "candidates_per_iteration": 12, "oracle_calls_per_iteration": 4},
        "strategy": {"kind": "random"},
        "generator": {"kind": "dataset-replay", "dataset": "perov_5/val"},
        "oracle": {"kind": "replay", "dataset": "perov_5/val", "measure": ["heat_ref"]},
        "guards": {"synthesizability": {"enabled": False}, "collapse": {"enabled": False}},
        "seed": 7,
    })
    components = build_components(config)
    components.oracle = HullOracle()
    with CandidateStore(f"sqlite:///{tmp_path / 's.db'}") as store:
        reports = run_campaign(components, store, config)
        measured = iteration_candidates(store, config.name, None, [CandidateStatus.EVALUATED])
    for r in reports:
        assert r.sun is not None and r.sun.classified == r.evaluated and r.sun.oracle_calls == r.oracle_calls
        assert r.sun.sun <= r.sun.stable <= r.sun.classified and r.sun.sun_strict <= r.sun.sun
        assert sorted(r.verified_hits) == sorted(r.sun.sun_ids)  # the sun objective's hits are the S.U.N. candidates
    total = campaign_sun(r.sun for r in reports)
    stable = [c for c in measured if c.measurements[0].value <= 0.1]
    assert total.classified == len(measured) == 8 and total.stable == total.sun == len(stable)  # no reference: all novel, ids distinct
    assert total.coverage == {"prototype": 8} and total.per_100_calls() == pytest.approx(100.0 * len(stable) / 8)
    with console.capture() as captured:
        print_reports(Output("table"), config, reports)
    text = captured.get()
    assert "S.U.N." in text and f"S.U.N. {total.sun} at 0.1 / {total.sun_strict} at 0 eV/atom" in text
    pytest.importorskip("prefect")
    from crystaloop.flows.artifacts import summary_markdown

    assert f"| S.U.N. | {reports[0].sun.describe()} |" in summary_markdown(reports[0], config)
