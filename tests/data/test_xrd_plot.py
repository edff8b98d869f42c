"""The Rietveld-style powder-fit figure: the difference curve is measured minus the scaled
calculated pattern, the ticks sit at the calculated reflections, the scale is least squares."""

from __future__ import annotations

import numpy as np
import pytest

from crystaloop.data.store.testing import perovskite, rock_salt
from crystaloop.data.xrd_forward import powder_pattern_of
from crystaloop.data.xrd_grid import DEFAULT_GRID
from crystaloop.data.xrd_plot import DIFFERENCE_LABEL, fitted_scale, powder_fit_figure, reflection_positions


def _lines(axes) -> dict[str, object]:  # noqa: ANN001
    return {line.get_label(): line for line in axes.get_lines()}


def test_the_figure_shows_measured_calculated_difference_and_reflection_ticks():
    two_theta = DEFAULT_GRID.two_theta()
    truth, guess = perovskite(3.905), perovskite(3.95)
    measured = 300.0 * powder_pattern_of(truth) + np.random.default_rng(0).normal(0.0, 2.0, two_theta.size)
    calculated = powder_pattern_of(guess)
    ticks = reflection_positions(guess)
    figure = powder_fit_figure(two_theta, measured, calculated, ticks, label="calculated #1",
                               compared=[("#1", calculated), ("#2", powder_pattern_of(rock_salt()))])
    upper, lower = figure.axes
    lines = _lines(upper)
    assert {"measured", "calculated #1", DIFFERENCE_LABEL} <= set(lines)
    measured_y, calculated_y = lines["measured"].get_ydata(), lines["calculated #1"].get_ydata()
    np.testing.assert_allclose(calculated_y, fitted_scale(measured, calculated) * calculated)
    offset = lines[DIFFERENCE_LABEL].get_ydata() - (measured_y - calculated_y)
    np.testing.assert_allclose(offset, offset[0], atol=1e-9)  # measured − calculated, shifted by a constant
    assert offset[0] < 0 and np.max(lines[DIFFERENCE_LABEL].get_ydata()) < 0  # drawn below the patterns
    tick_line = next(line for label, line in lines.items() if label.startswith("reflections"))
    np.testing.assert_allclose(np.sort(tick_line.get_xdata()), ticks)
    assert len(_lines(lower)) == 3  # measured and the two compared patterns


def test_reflection_ticks_sit_under_the_calculated_peaks():
    crystal = perovskite(3.905)
    pattern, two_theta = powder_pattern_of(crystal), DEFAULT_GRID.two_theta()
    ticks = reflection_positions(crystal)
    assert len(ticks) > 5 and np.all(np.diff(ticks) > 0)
    strong = [i for i in range(1, pattern.size - 1) if pattern[i] > 0.05 and pattern[i] >= pattern[i - 1] and pattern[i] >= pattern[i + 1]]
    assert strong
    for i in strong:  # every peak maximum lies on a grid step next to a calculated reflection
        assert np.min(np.abs(ticks - two_theta[i])) <= DEFAULT_GRID.step, two_theta[i]


def test_scale_is_least_squares_and_shapes_must_agree():
    calculated = np.array([0.0, 1.0, 0.5, 0.2])
    assert fitted_scale(4.0 * calculated, calculated) == pytest.approx(4.0)
    assert fitted_scale(calculated, np.zeros(4)) == 0.0
    with pytest.raises(ValueError, match=r"\(4,\).*\(3,\)"):
        fitted_scale(calculated, calculated[:3])
