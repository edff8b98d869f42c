"""Pictures of unit cells: a 3-D projection of one crystal as PNG bytes, drawn with matplotlib's
Agg canvas (a bare ``Figure``, no pyplot state, nothing at import time, no browser).

What a picture shows:

* the cell's twelve edges, drawn in a standard orientation built from the lattice parameters
  (``a`` along x, ``b`` in the xy plane), so a rotated copy of a crystal gives the same picture;
* every site as a sphere in its Jmol (CPK) colour, its diameter proportional to the element's
  covalent radius (both tables from ``ase.data``), plus the periodic images of sites that lie on
  a face, edge or corner of the cell (within :data:`BOUNDARY_TOLERANCE` in fractional units), so a
  cubic perovskite shows all eight corner atoms;
* a legend of the elements and a title with the reduced formula and the space group (spglib at
  ``symprec`` Å through :meth:`~crystaloop.data.crystal.Crystal.spacegroup_number`; "space group
  unknown" when spglib cannot tell), and an optional caption line.

The formula and the space group are also written into the PNG's text chunks (``Title``,
``SpaceGroup``, ``Description``), so a file says what it shows without being looked at.

* :func:`render_structure` — a :class:`StructurePicture` (PNG bytes and what the title says);
* :func:`write_structure_png` — the same written to a file;
* :func:`draw_structure` — the drawing onto a given 3-D axes, for figures of several cells.
"""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from crystaloop.data.crystal import Crystal, element_symbol

if TYPE_CHECKING:
    from mpl_toolkits.mplot3d import Axes3D

__all__ = [
    "StructurePicture",
    "render_structure",
    "write_structure_png",
    "draw_structure",
    "space_group_label",
    "standard_lattice",
    "BOUNDARY_TOLERANCE",
    "DEFAULT_SYMPREC",
]

BOUNDARY_TOLERANCE = 0.01
"""Fractional distance from a cell face within which a site is also drawn on the opposite face."""

DEFAULT_SYMPREC = 0.1
"""spglib distance tolerance (Å) of the space group in a picture's title."""

_EDGE_COLOUR = "0.25"


@dataclass(frozen=True)
class StructurePicture:
    """A rendered unit cell.

    Attributes:
        png: the PNG file's bytes, ``size`` pixels.
        formula: reduced formula (``"SrTiO3"``).
        space_group: ``"Pm-3m (221)"``, or ``"space group unknown"`` when spglib cannot tell.
        elements: the symbols in the legend, in order of atomic number.
        size: (width, height) in pixels.
    """

    png: bytes
    formula: str
    space_group: str
    elements: tuple[str, ...]
    size: tuple[int, int]

    @property
    def title(self) -> str:
        """The title line drawn on the picture."""
        return f"{self.formula}   {self.space_group}"


def space_group_label(crystal: Crystal, symprec: float = DEFAULT_SYMPREC) -> str:
    """Hermann–Mauguin symbol and number (``"Pm-3m (221)"``) of ``crystal`` at ``symprec`` Å,
    or ``"space group unknown"`` when spglib cannot tell."""
    number = crystal.spacegroup_number(symprec=symprec)
    if number is None:
        return "space group unknown"
    from pymatgen.symmetry.groups import SpaceGroup

    return f"{SpaceGroup.from_int_number(number).symbol} ({number})"


def standard_lattice(crystal: Crystal) -> np.ndarray:
    """(3, 3) rows in Å: the crystal's lattice rebuilt from its parameters with ``a`` along x and
    ``b`` in the xy plane (same lengths and angles, a fixed orientation)."""
    a, b, c, alpha, beta, gamma = crystal.lattice_parameters
    ca, cb, cg = (np.cos(np.radians(x)) for x in (alpha, beta, gamma))
    sg = np.sin(np.radians(gamma))
    cx = c * cb
    cy = c * (ca - cb * cg) / sg
    cz = np.sqrt(max(c * c - cx * cx - cy * cy, 0.0))
    return np.array([[a, 0.0, 0.0], [b * cg, b * sg, 0.0], [cx, cy, cz]])


def _sites_with_boundary_images(crystal: Crystal) -> tuple[np.ndarray, np.ndarray]:
    """(M, 3) fractional coordinates and (M,) atomic numbers: every site, plus its copies on
    the opposite faces when it lies within :data:`BOUNDARY_TOLERANCE` of a face."""
    frac = np.asarray(crystal.frac_coords, dtype=np.float64) % 1.0
    frac[frac > 1.0 - BOUNDARY_TOLERANCE] -= 1.0  # 0.999 sits at the origin's face, drawn at -0.001 and 0.999
    coords, numbers = [], []
    for position, z in zip(frac, crystal.numbers, strict=True):
        shifts = [(0.0, 1.0) if abs(x) < BOUNDARY_TOLERANCE else (0.0,) for x in position]
        for shift in itertools.product(*shifts):
            coords.append(position + np.array(shift))
            numbers.append(int(z))
    return np.array(coords), np.array(numbers)


def _cell_edges(lattice: np.ndarray) -> list[np.ndarray]:
    """The twelve edges of the cell, each a (2, 3) pair of Cartesian corners in Å."""
    corners = {bits: np.array(bits, dtype=np.float64) @ lattice for bits in itertools.product((0, 1), repeat=3)}
    edges = []
    for bits in corners:
        for axis in range(3):
            if bits[axis] == 0:
                other = tuple(1 if i == axis else b for i, b in enumerate(bits))
                edges.append(np.stack([corners[bits], corners[other]]))
    return edges


def draw_structure(ax: Axes3D, crystal: Crystal, *, title: str | None = None, legend: bool = True,
                   elevation: float = 18.0, azimuth: float = -62.0, atom_scale: float = 1.0) -> tuple[str, ...]:
    """Draw ``crystal``'s cell edges and atoms onto the 3-D axes ``ax`` (see the module
    docstring); returns the legend's element symbols in order of atomic number.

    ``atom_scale`` multiplies the sphere diameters (1: a covalent radius is drawn at half its
    length in the picture's scale, so neighbours do not hide each other)."""
    from ase.data import covalent_radii
    from ase.data.colors import jmol_colors
    from matplotlib.lines import Line2D

    lattice = standard_lattice(crystal)
    frac, numbers = _sites_with_boundary_images(crystal)
    cart = frac @ lattice
    for edge in _cell_edges(lattice):
        ax.plot(edge[:, 0], edge[:, 1], edge[:, 2], color=_EDGE_COLOUR, lw=1.0)
    corners = np.array(list(itertools.product((0, 1), repeat=3)), dtype=np.float64) @ lattice
    points = np.vstack([corners, cart])
    low, high = points.min(axis=0), points.max(axis=0)
    span = np.maximum(high - low, 1e-6)
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    ax.set_zlim(low[2], high[2])
    ax.set_box_aspect(tuple(span), zoom=0.9)
    ax.view_init(elev=elevation, azim=azimuth)
    ax.set_axis_off()
    bbox = ax.get_position()
    figure = ax.get_figure()
    width_in, height_in = figure.get_size_inches()
    axes_points = 72.0 * min(bbox.width * width_in, bbox.height * height_in)
    points_per_angstrom = 0.72 * axes_points / float(np.linalg.norm(span))  # the box's diagonal fits the axes
    diameters = 2.0 * 0.5 * atom_scale * covalent_radii[numbers] * points_per_angstrom
    colours = jmol_colors[numbers]
    ax.scatter(cart[:, 0], cart[:, 1], cart[:, 2], s=np.maximum(diameters, 3.0) ** 2, c=colours,
               edgecolors="0.15", linewidths=0.5, alpha=1.0, depthshade=True)
    elements = tuple(element_symbol(z) for z in sorted(set(numbers.tolist())))
    if legend:
        handles = [Line2D([], [], marker="o", linestyle="", markersize=9, markerfacecolor=jmol_colors[z],
                          markeredgecolor="0.15", label=element_symbol(z)) for z in sorted(set(numbers.tolist()))]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.0, 1.0), frameon=False, fontsize=9)
    if title is not None:
        ax.set_title(title, fontsize=10)
    return elements


def render_structure(crystal: Crystal, *, caption: str | None = None, size: tuple[int, int] = (480, 420),
                     dpi: int = 100, symprec: float = DEFAULT_SYMPREC, elevation: float = 18.0,
                     azimuth: float = -62.0) -> StructurePicture:
    """The unit cell of ``crystal`` as a PNG of ``size`` (width, height) pixels at ``dpi``,
    titled with its formula and space group (spglib at ``symprec`` Å) and, on a second line,
    ``caption``; the view is ``elevation`` and ``azimuth`` degrees in matplotlib's convention."""
    from matplotlib.figure import Figure

    width, height = size
    if width < 64 or height < 64:
        raise ValueError(f"picture size {size} is too small; give at least 64 × 64 pixels")
    formula = crystal.reduced_formula
    group = space_group_label(crystal, symprec)
    title = f"{formula}   {group}" + (f"\n{caption}" if caption else "")
    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    ax = figure.add_axes((0.0, 0.0, 1.0, 0.9 if caption else 0.93), projection="3d")
    elements = draw_structure(ax, crystal, legend=True, elevation=elevation, azimuth=azimuth)
    figure.suptitle(title, fontsize=11, y=0.985, va="top")
    buffer = io.BytesIO()
    metadata = {"Title": formula, "SpaceGroup": group, "Software": "crystaloop",
                "Description": f"{formula}, {group} (spglib symprec {symprec} A), {crystal.n_sites} sites"}
    figure.savefig(buffer, format="png", dpi=dpi, metadata=metadata)  # a bare Figure draws with the Agg canvas
    return StructurePicture(png=buffer.getvalue(), formula=formula, space_group=group, elements=elements, size=(width, height))


def write_structure_png(crystal: Crystal, path: Path, **options: object) -> StructurePicture:
    """:func:`render_structure` (same keyword ``options``) written to ``path`` (folders made)."""
    picture = render_structure(crystal, **options)  # type: ignore[arg-type]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(picture.png)
    return picture
