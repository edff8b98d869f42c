"""Campaign figures: the Pareto mask is the set of non-dominated points; PNGs render."""

from __future__ import annotations

import io

import numpy as np

from crystaloop.data.records import Candidate, Measurement, Provenance
from crystaloop.data.store.testing import base_cells
from crystaloop.loop.config import CampaignConfig
from crystaloop.loop.plots import discovery_curve_png, objective_values, pareto_mask, pareto_png
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
