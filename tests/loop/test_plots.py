"""Campaign figures: the Pareto mask is the set of non-dominated points; PNGs render; the report
folder holds pictures of the best evaluated structures, best first."""

from __future__ import annotations

import io

import numpy as np

from crystaloop.data.records import Candidate, CandidateStatus, Measurement, Provenance
from crystaloop.data.store.testing import base_cells
from crystaloop.loop.config import CampaignConfig
from crystaloop.loop.plots import (
    discovery_curve_png,
    objective_values,
    pareto_mask,
    pareto_png,
    top_structures,
    write_figures,
)
from crystaloop.loop.report import IterationReport, PredictedHit

TWO = CampaignConfig.model_validate(
    {"name": "two", "objectives": [{"property": "a", "goal": "maximise"}, {"property": "b", "goal": "target", "window": [0.0, 1.0]}]}
)


def _image(png: bytes) -> np.ndarray:
    from matplotlib.image import imread

    return imread(io.BytesIO(png), format="png")


def test_pareto_mask_keeps_exactly_the_non_dominated_points():
    points = np.random.default_rng(0).normal(size=(60, 2))
    mask = pareto_mask(points)
    for i, p in enumerate(points):
        dominated = any(np.all(q <= p) and np.any(q < p) for q in points)
        assert mask[i] == (not dominated)
    assert pareto_mask(np.array([[0.0, 0.0], [0.0, 0.0]])).all()  # ties dominate nothing


def test_figures_render_and_mark_predicted_values():
    cell = base_cells()["SrTiO3"]
    measured = Candidate(crystal=cell, provenance=Provenance(component="t"), measurements=(Measurement(oracle="o", property="a", value=2.0), Measurement(oracle="o", property="b", value=0.5)))
    guessed = Candidate(crystal=cell, provenance=Provenance(component="t"), measurements=(Measurement(oracle="o", property="a", value=1.0),), predictions={"b": (3.0, 0.2, "")})
    values, predicted = objective_values([measured, guessed], TWO.objectives)
    np.testing.assert_allclose(values, [[2.0, 0.5], [1.0, 3.0]])
    assert predicted.tolist() == [[False, False], [False, True]]
    assert _image(pareto_png(values, TWO, predicted)).shape[:2] == (400, 640)
    assert pareto_png(np.full((2, 2), np.nan), TWO) is None
    single = CampaignConfig.model_validate({"name": "one", "objectives": [{"property": "a", "goal": "maximise"}]})
    assert pareto_png(values, single) is None
    reports = [
        IterationReport(campaign="two", iteration=i, config_hash="x", oracle_calls=4, verified_hits=["h"] * i,
                        predicted_hits=[PredictedHit(id="p", formula="SrTiO3", predicted={"b": (0.5, 0.1, "")})])
        for i in range(3)
    ]
    assert _image(discovery_curve_png(reports, "t")).shape[:2] == (400, 640)


def _evaluated(cell, heat: float | None, predicted: float | None = None) -> Candidate:
    measurements = () if heat is None else (Measurement(oracle="o", property="heat_ref", value=heat),)
    predictions = {} if predicted is None else {"heat_ref": (predicted, 0.1, "eV")}
    return Candidate(crystal=cell, provenance=Provenance(component="t"), status=CandidateStatus.EVALUATED,
                     measurements=measurements, predictions=predictions)


def test_the_report_folder_holds_pictures_of_the_best_evaluated_structures(tmp_path):
    config = CampaignConfig.model_validate({"name": "pics", "objectives": [{"property": "heat_ref", "goal": "minimise", "units": "eV"}]})
    cells = base_cells()
    evaluated = [_evaluated(cells["NaCl"], -0.2), _evaluated(cells["SrTiO3"], -0.9), _evaluated(cells["Si"], None, predicted=-5.0),
                 _evaluated(cells["MgO"], -0.5), Candidate(crystal=cells["C"], provenance=Provenance(component="t"), status=CandidateStatus.SCORED)]
    reports = [IterationReport(campaign="pics", iteration=0, config_hash="x", oracle_calls=4)]
    written = write_figures(reports, config, evaluated, tmp_path, pictures=3)
    names = [p.name for p in written]
    assert names == ["discovery-curve.png", "top-structure-1.png", "top-structure-2.png", "top-structure-3.png", "top-structures.md"]
    from PIL import Image

    titles = [Image.open(tmp_path / f"top-structure-{rank}.png").text["Title"] for rank in (1, 2, 3)]
    assert titles == ["SrTiO3", "MgO", "NaCl"]  # measured best first; the predicted-only Si and the unevaluated C come after
    markdown = (tmp_path / "top-structures.md").read_text()
    assert all(f"](top-structure-{rank}.png)" in markdown for rank in (1, 2, 3))
    assert "| 1 | SrTiO3 | Pm-3m (221) | heat_ref = -0.9 eV |" in markdown
    entries = top_structures(evaluated, config, k=5)
    assert [e.picture.formula for e in entries] == ["SrTiO3", "MgO", "NaCl", "Si"] and "(predicted)" in entries[-1].caption
    assert write_figures(reports, config, [], tmp_path / "empty") == [tmp_path / "empty" / "discovery-curve.png"]
