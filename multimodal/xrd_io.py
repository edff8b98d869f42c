"""Measured powder patterns: two-column ``.xy`` / ``.csv`` files read onto the shared 2θ grid.

A pattern file holds one point per line: 2θ (degrees) and intensity (any units), separated by
whitespace, a comma, a semicolon or a tab; further columns (e.g. an error estimate) are ignored.
Lines starting with ``#``, ``!``, ``'``, ``;`` or ``//`` are comments, blank lines are skipped,
and non-numeric lines are accepted as a header only before the first data line. Every problem is
reported as a :class:`~crystaloop.data.errors.DatasetError` naming the file and, where there is
one, the line.

:func:`resample_to_grid` puts the points on the grid of :mod:`crystaloop.data.xrd_grid`: a
pattern measured with another wavelength is first converted through Bragg's law (same
d-spacings), points finer than the grid are averaged over each grid step (box filter) before
linear interpolation, the part of the grid the measurement does not cover is zero, and the
result is scaled to max 1 after subtracting its minimum. A measurement that covers too little
of the grid (another radiation or range, or a file of d-spacings) is refused.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from crystaloop.data.errors import DatasetError
from crystaloop.data.xrd_grid import DEFAULT_GRID, PatternGrid

__all__ = ["PATTERN_SUFFIXES", "read_xy", "read_pattern", "resample_to_grid", "write_xy"]

PATTERN_SUFFIXES = (".xy", ".csv", ".txt", ".dat", ".xye")
_COMMENT_PREFIXES = ("#", "!", "'", ";", "//")
_SEPARATORS = re.compile(r"[,;\s]+")
MIN_POINTS = 20


def read_xy(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The raw (2θ degrees, intensity) columns of a pattern file, as float64 arrays (M,).

    Raises:
        DatasetError: missing or empty file, a malformed or non-finite data line, fewer than
            ``MIN_POINTS`` points, 2θ not strictly monotonic, outside (0°, 180°), or all
            intensities zero.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such pattern file")
    if path.suffix.lower() not in PATTERN_SUFFIXES:
        raise DatasetError(f"{path}: unknown pattern file type {path.suffix!r}; allowed: {', '.join(PATTERN_SUFFIXES)}")
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read as a text file of two columns ({exc})") from exc
    xs: list[float] = []
    ys: list[float] = []
    lines: list[int] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(_COMMENT_PREFIXES):
            continue
        fields = [f for f in _SEPARATORS.split(line) if f]
        values = _numbers(fields[:2])
        if values is None or len(fields) < 2:
            if not xs and values is None:
                continue  # a header before the data
            raise DatasetError(
                f"{path} line {number}: expected two numbers (2θ in degrees, intensity), got {raw.strip()[:60]!r}"
            )
        x, y = values
        if not (np.isfinite(x) and np.isfinite(y)):
            raise DatasetError(f"{path} line {number}: non-finite value in {raw.strip()[:60]!r}")
        if not 0.0 < x < 180.0:
            raise DatasetError(f"{path} line {number}: 2θ = {x:g}° is outside (0°, 180°); the first column must be 2θ")
        xs.append(x)
        ys.append(y)
        lines.append(number)
    if not xs:
        raise DatasetError(f"{path}: no data lines (expected two columns: 2θ in degrees, intensity)")
    if len(xs) < MIN_POINTS:
        raise DatasetError(f"{path}: only {len(xs)} data points; a pattern needs at least {MIN_POINTS}")
    two_theta, intensity = np.array(xs), np.array(ys)
    steps = np.diff(two_theta)
    if not ((steps > 0).all() or (steps < 0).all()):
        bad = int(np.flatnonzero(steps <= 0)[0] if steps[0] > 0 else np.flatnonzero(steps >= 0)[0]) + 1
        raise DatasetError(
            f"{path} line {lines[bad]}: 2θ = {two_theta[bad]:g}° after {two_theta[bad - 1]:g}°; "
            "2θ must be strictly increasing (or strictly decreasing)"
        )
    if steps[0] < 0:
        two_theta, intensity = two_theta[::-1].copy(), intensity[::-1].copy()
    if not np.any(intensity != intensity[0]):
        raise DatasetError(f"{path}: every intensity is {intensity[0]:g}; the pattern has no peaks")
    return two_theta, intensity


def _numbers(fields: list[str]) -> tuple[float, float] | None:
    if len(fields) < 2:
        try:
            float(fields[0])
        except (ValueError, IndexError):
            return None
        return (float("nan"), float("nan"))  # a one-number line: malformed data, not a header
    try:
        return float(fields[0]), float(fields[1])
    except ValueError:
        return None


def resample_to_grid(
    two_theta: np.ndarray,
    intensity: np.ndarray,
    grid: PatternGrid = DEFAULT_GRID,
    *,
    wavelength: float | None = None,
    min_coverage: float = 0.5,
    source: str = "pattern",
) -> np.ndarray:
    """(P,) float32 pattern on ``grid`` from measured points (M,), scaled to max 1.

    Args:
        two_theta: increasing 2θ values, degrees, measured at ``wavelength``.
        intensity: intensities at those angles (any units; the minimum is subtracted).
        wavelength: radiation of the measurement, Å (default: the grid's, Cu Kα).
        min_coverage: the fraction of the grid's 2θ range the measurement must cover.
        source: names the data in error messages (a file path).

    Raises:
        DatasetError: the measurement covers less than ``min_coverage`` of the grid.
    """
    two_theta = np.asarray(two_theta, dtype=np.float64)
    intensity = np.asarray(intensity, dtype=np.float64)
    if wavelength is not None and abs(wavelength - grid.wavelength) > 1e-9:
        sin_theta = np.sin(np.radians(two_theta) / 2.0) * grid.wavelength / wavelength
        keep = sin_theta < 1.0
        two_theta, intensity = np.degrees(2.0 * np.arcsin(sin_theta[keep])), intensity[keep]
    low, high = max(two_theta[0], grid.two_theta_min), min(two_theta[-1], grid.two_theta_max)
    coverage = max(high - low, 0.0) / (grid.two_theta_max - grid.two_theta_min)
    if coverage < min_coverage:
        raise DatasetError(
            f"{source}: measured 2θ {two_theta[0]:.2f}–{two_theta[-1]:.2f}° (at {wavelength or grid.wavelength} Å) "
            f"covers {coverage:.0%} of the grid {grid.two_theta_min:g}–{grid.two_theta_max:g}° at "
            f"{grid.wavelength} Å; at least {min_coverage:.0%} is needed (another radiation? pass its wavelength)"
        )
    step = float(np.median(np.diff(two_theta)))
    if step < grid.step:  # average the finer points over one grid step before sampling
        width = max(int(round(grid.step / step)), 1)
        kernel = np.ones(width) / width
        intensity = np.convolve(np.pad(intensity, (width // 2, width - 1 - width // 2), mode="edge"), kernel, "valid")
    x = grid.two_theta()
    values = np.interp(x, two_theta, intensity)
    inside = (x >= two_theta[0]) & (x <= two_theta[-1])
    values = np.where(inside, values - values[inside].min(), 0.0)
    top = values.max()
    if not top > 0:
        raise DatasetError(f"{source}: the pattern is flat over the grid's 2θ range")
    return (values / top).astype(np.float32)


def read_pattern(
    path: str | Path, grid: PatternGrid = DEFAULT_GRID, *, wavelength: float | None = None, min_coverage: float = 0.5
) -> np.ndarray:
    """(P,) float32 measured pattern from a two-column file, on ``grid`` and scaled to max 1.

    See :func:`read_xy` and :func:`resample_to_grid` for what is accepted and refused.
    """
    two_theta, intensity = read_xy(path)
    return resample_to_grid(
        two_theta, intensity, grid, wavelength=wavelength, min_coverage=min_coverage, source=str(path)
    )


def write_xy(path: str | Path, two_theta: np.ndarray, intensity: np.ndarray, *, header: str = "") -> Path:
    """Write a two-column pattern file (comma-separated for ``.csv``, spaces otherwise)."""
    path = Path(path)
    two_theta, intensity = np.asarray(two_theta, dtype=np.float64), np.asarray(intensity, dtype=np.float64)
    if two_theta.shape != intensity.shape or two_theta.ndim != 1:
        raise ValueError(f"two_theta and intensity must be 1-D of one length, got {two_theta.shape}, {intensity.shape}")
    separator = "," if path.suffix.lower() == ".csv" else " "
    lines = [f"# {line}" for line in header.splitlines()] if header else []
    lines += [f"{x:.5f}{separator}{y:.8g}" for x, y in zip(two_theta, intensity, strict=True)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
