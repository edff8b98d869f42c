"""Readers for the dataset formats crystaloop accepts.

* **CDVAE CSV** (``.csv`` or ``.csv.gz``): perov_5, carbon_24, MP-20 and MPTS-52 as published with
  CDVAE/DiffCSP: a ``cif`` column with a P1 CIF per row, an id column (``material_id``) and
  numeric property columns (every other column that holds numbers).
* **Structure folder**: ``*.cif``, ``POSCAR*``, ``CONTCAR*``, ``*.vasp`` files, one structure each.
* **extxyz** (``.extxyz``, ``.xyz``): multi-frame extended XYZ; numeric ``info`` keys become
  properties.

A bad row never aborts a read: it becomes a :class:`RowError` naming the file, row and problem,
and the good rows are returned. Every structure passes :func:`check_plausible` before it is kept.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import math
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np

from crystaloop.data.crystal import Crystal, PlausibilityLimits, check_plausible
from crystaloop.data.datasets.base import PROPERTY_UNITS, CrystalDataset, RowError
from crystaloop.data.errors import CrystaloopError, DatasetError, InvalidStructureError

__all__ = [
    "DatasetFormat",
    "detect_format",
    "read_cdvae_csv",
    "read_structure_folder",
    "read_extxyz",
    "parse_structure_text",
    "structure_file_format",
    "STRUCTURE_FILE_PATTERNS",
]

logger = logging.getLogger(__name__)

DatasetFormat = Literal["cdvae-csv", "structure-folder", "extxyz", "structure-file"]
STRUCTURE_FILE_PATTERNS = ("*.cif", "POSCAR*", "CONTCAR*", "*.vasp", "*.poscar")
# Columns of the CDVAE layouts that are identifiers or text, never properties.
_NON_PROPERTY_COLUMNS = {"", "Unnamed: 0", "material_id", "cif", "formula", "pretty_formula", "elements", "spacegroup.number"}
_ID_COLUMNS = ("material_id", "", "Unnamed: 0")

ProgressCallback = Callable[[int, int], None]
_NAN_TOKEN = re.compile(r"(?i)(?<![\w.])[+-]?nan(?![\w.])")
_CIF_CELL_LENGTH = re.compile(r"(?im)^[ \t]*_cell_length_([abc])[ \t]+(\S+)")
_CIF_LOOP = re.compile(r"(?im)^[ \t]*loop_[ \t]*$")
_BINARY_SNIFF_CHARS = 8192


def detect_format(path: Path) -> DatasetFormat:
    """Guess the format of ``path`` from its type and suffix; raise with the accepted forms."""
    if path.is_dir():
        return "structure-folder"
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        return "cdvae-csv"
    if name.endswith((".extxyz", ".xyz", ".extxyz.gz", ".xyz.gz")):
        return "extxyz"
    from crystaloop.data.datasets.files import is_structure_file

    if is_structure_file(path):
        return "structure-file"
    raise DatasetError(
        f"cannot tell the format of {path}; accepted: a CDVAE-style .csv/.csv.gz, an .extxyz/.xyz file, "
        f"a .cif (every data block), POSCAR or .json (pymatgen Structure dicts, OPTIMADE documents) file, "
        f"or a folder of {', '.join(STRUCTURE_FILE_PATTERNS)} files"
    )


def structure_file_format(path: Path) -> Literal["cif", "poscar"] | None:
    """``"cif"`` or ``"poscar"`` for a single-structure file name (``*.cif``, ``POSCAR*``,
    ``CONTCAR*``, ``*.vasp``, ``*.poscar``), ``None`` for anything else."""
    name = path.name
    if name.lower().endswith(".cif"):
        return "cif"
    if name.upper().startswith(("POSCAR", "CONTCAR")) or name.lower().endswith((".vasp", ".poscar")):
        return "poscar"
    return None


def _read_one_file(path: Path, limits: PlausibilityLimits | None) -> Crystal:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InvalidStructureError(f"cannot read the file: {exc.strerror or exc}") from None
    return parse_structure_text(text, structure_file_format(path) or "cif", limits)


def parse_structure_text(text: str, fmt: Literal["cif", "poscar"], limits: PlausibilityLimits | None = None) -> Crystal:
    """Parse one CIF or POSCAR text into a checked, right-handed :class:`Crystal`.

    Before the (slow) pymatgen parse, the text is checked cheaply: a CIF's cell lengths must be
    positive numbers (a negative length would describe a left-handed cell: refused), its
    atom-site loop and a POSCAR's counts line must not list more sites than ``limits.max_sites``,
    and a POSCAR's counts must match its coordinate lines. A left-handed basis that passes (a
    POSCAR whose lattice rows have a negative determinant) is re-oriented to the right-handed
    ``-L`` with fractional coordinates ``-f`` (mod 1): every atom stays where it was, only the
    basis changes (:meth:`Crystal.right_handed`).

    Raises:
        InvalidStructureError: empty, binary or malformed text, a negative cell length, too many sites,
            a POSCAR count mismatch, partial occupancy, unknown element, NaN, or a structure that
            fails :func:`check_plausible`.
    """
    if not text.strip():
        raise InvalidStructureError("empty input: no structure to read")
    if "\0" in text[:_BINARY_SNIFF_CHARS]:
        raise InvalidStructureError(f"binary data (NUL bytes), not {fmt.upper()} text")
    limits = limits or PlausibilityLimits()
    if fmt == "cif":
        _precheck_cif(text, limits)
    else:
        _precheck_poscar(text, limits)
    structure = _parse_with_pymatgen(text, fmt)
    crystal = Crystal.from_pymatgen(structure).right_handed()
    check_plausible(crystal, limits)
    return crystal


def _precheck_cif(text: str, limits: PlausibilityLimits) -> None:
    """Negative cell lengths and oversized atom-site loops, read from the text without parsing it."""
    for axis, value in _CIF_CELL_LENGTH.findall(text):
        try:
            number = float(value.split("(")[0])
        except ValueError:
            continue  # pymatgen reports the malformed value
        if number <= 0:
            raise InvalidStructureError(
                f"_cell_length_{axis} is {value}; cell lengths must be positive (a negative length "
                "would make a left-handed cell)"
            )
    sites = _largest_atom_site_loop(text)
    if sites > limits.max_sites:
        raise InvalidStructureError(
            f"the atom-site loop lists {sites} sites, more than the limit of {limits.max_sites} (checked before parsing)"
        )


def _largest_atom_site_loop(text: str) -> int:
    """Rows of the largest ``_atom_site_fract_*``/``_atom_site_Cartn_*`` loop (values / columns)."""
    largest = 0
    for block in _CIF_LOOP.split(text)[1:]:
        headers, values = 0, 0
        for line in block.splitlines():
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            if stripped.startswith("_") and values == 0:
                headers += 1
                if not stripped.lower().startswith("_atom_site_"):
                    headers = -(10**9)  # not an atom-site loop
                continue
            if stripped.startswith(("_", "data_")) or headers <= 0:
                break
            values += len(stripped.split())
        if headers > 0:
            largest = max(largest, values // headers)
    return largest


def _precheck_poscar(text: str, limits: PlausibilityLimits) -> None:
    """A POSCAR's counts line against the limit and against its coordinate lines."""
    lines = text.splitlines()
    if len(lines) < 7:
        return  # pymatgen reports the truncated file
    counts_index = 5 if _all_ints(lines[5]) else 6
    if counts_index >= len(lines) or not _all_ints(lines[counts_index]):
        return
    counts = [int(t) for t in lines[counts_index].split()]
    total = sum(counts)
    if total > limits.max_sites:
        raise InvalidStructureError(
            f"the counts line lists {total} sites, more than the limit of {limits.max_sites} (checked before parsing)"
        )
    start = counts_index + 1
    if start < len(lines) and lines[start].strip()[:1].lower() == "s":  # Selective dynamics
        start += 1
    coordinates = 0
    for line in lines[start + 1 :]:  # after the Direct/Cartesian line
        tokens = line.split()
        if len(tokens) < 3 or not all(_is_float(t) for t in tokens[:3]):
            break
        coordinates += 1
    if coordinates != total:
        raise InvalidStructureError(
            f"POSCAR counts {' '.join(map(str, counts))} list {total} atoms but {coordinates} coordinate "
            f"lines follow; the counts must match the coordinates"
        )


def _all_ints(line: str) -> bool:
    tokens = line.split()
    return bool(tokens) and all(t.isdigit() for t in tokens)


def _is_float(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _parse_with_pymatgen(text: str, fmt: Literal["cif", "poscar"]):  # -> pymatgen Structure
    from pymatgen.core import Structure

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if fmt == "cif":
                from pymatgen.io.cif import CifParser

                structures = CifParser.from_str(text, occupancy_tolerance=1.0).parse_structures(primitive=False)
                if not structures:
                    raise ValueError("no structure found")
                structure = structures[0]
            else:
                structure = Structure.from_str(text, fmt="poscar")
        except CrystaloopError:
            raise
        except Exception as exc:  # pymatgen raises many types for bad text; report them all the same way
            hints = "; ".join(sorted({str(w.message).splitlines()[0] for w in caught}))[:300]
            detail = f"{type(exc).__name__}: {exc}".strip()
            if _NAN_TOKEN.search(text):
                detail = "a NaN value where a number is required"
            raise InvalidStructureError(f"malformed {fmt.upper()} ({detail}{'; ' + hints if hints else ''})") from None
    for site in structure:
        for specie in site.species:
            if getattr(specie, "Z", None) is None or type(specie).__name__.startswith("Dummy"):
                symbol = getattr(specie, "symbol", str(specie))
                raise InvalidStructureError(f"unknown element {symbol!r}; allowed: element symbols H..Og")
    return structure


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def iter_csv_rows(path: Path) -> Iterator[dict[str, str]]:
    """Rows of a CDVAE CSV as dicts (CIF fields span several lines; the csv module handles that)."""
    csv.field_size_limit(sys.maxsize)
    with _open_text(path) as handle:
        yield from csv.DictReader(handle)


def read_cdvae_csv(
    path: Path,
    *,
    limits: PlausibilityLimits | None = None,
    max_rows: int | None = None,
    progress: ProgressCallback | None = None,
) -> CrystalDataset:
    """Read a CDVAE/DiffCSP CSV (perov_5, carbon_24, MP-20, MPTS-52 layouts).

    Args:
        path: the ``.csv`` or ``.csv.gz`` file.
        limits: plausibility limits every structure must meet.
        max_rows: read at most this many rows (for quick looks).
        progress: called as ``progress(done, total)`` while reading.

    Raises:
        DatasetError: the file has no ``cif`` column or cannot be opened.
    """
    try:
        rows = list(iter_csv_rows(path))
    except (OSError, csv.Error, UnicodeDecodeError, EOFError) as exc:
        raise DatasetError(f"cannot read {path} as CSV: {exc}") from None
    if max_rows is not None:
        rows = rows[:max_rows]
    columns = list(rows[0].keys()) if rows else []
    if rows and "cif" not in columns:
        raise DatasetError(f"{path} has no 'cif' column; found columns {columns}; expected the CDVAE layout")
    id_column = next((c for c in _ID_COLUMNS if c in columns), None)
    # Known property columns are always parsed (a bad value is a row error); other columns count
    # as properties when their first rows hold numbers.
    property_columns = [
        c for c in columns if c in PROPERTY_UNITS or (c not in _NON_PROPERTY_COLUMNS and _looks_numeric(rows, c))
    ]

    crystals, ids, sources, errors = [], [], [], []
    values: dict[str, list[float]] = {c: [] for c in property_columns}
    for row_number, row in enumerate(rows, start=1):
        row_id = (row.get(id_column) or "").strip() if id_column else ""
        where = f"{path.name} row {row_number}" + (f" (material_id={row_id})" if row_id else "")
        try:
            crystal = parse_structure_text(row.get("cif") or "", "cif", limits)
            parsed = {c: _to_float(row.get(c), c) for c in property_columns}
        except InvalidStructureError as exc:
            errors.append(RowError(where, exc.problem))
        else:
            crystals.append(crystal)
            ids.append(row_id or str(row_number))
            sources.append(where)
            for c in property_columns:
                values[c].append(parsed[c])
        if progress is not None:
            progress(row_number, len(rows))
    return CrystalDataset(
        name=str(path),
        crystals=crystals,
        ids=ids,
        sources=sources,
        properties={c: np.array(v, dtype=np.float64) for c, v in values.items()},
        errors=errors,
    )


def _looks_numeric(rows: list[dict[str, str]], column: str) -> bool:
    for row in rows[:50]:
        value = (row.get(column) or "").strip()
        if not value:
            continue
        try:
            float(value)
        except ValueError:
            return False
    return True


def _to_float(value: str | None, column: str) -> float:
    if value is None or not value.strip():
        return float("nan")
    try:
        number = float(value)
    except ValueError:
        raise InvalidStructureError(f"property {column!r} is not a number: {value!r}") from None
    if math.isinf(number):
        raise InvalidStructureError(f"property {column!r} is infinite: {value!r}")
    return number


def read_structure_folder(
    path: Path, *, limits: PlausibilityLimits | None = None, progress: ProgressCallback | None = None
) -> CrystalDataset:
    """Read every CIF/POSCAR file in a folder (not recursive), in sorted name order."""
    files = sorted({f for pattern in STRUCTURE_FILE_PATTERNS for f in path.glob(pattern) if f.is_file()})
    if not files:
        raise DatasetError(f"{path} holds no structure files; expected {', '.join(STRUCTURE_FILE_PATTERNS)}")
    crystals, ids, sources, errors = [], [], [], []
    for done, file in enumerate(files, start=1):
        try:
            crystal = _read_one_file(file, limits)
        except InvalidStructureError as exc:
            errors.append(RowError(file.name, exc.problem))
        else:
            crystals.append(crystal)
            ids.append(file.stem)
            sources.append(file.name)
        if progress is not None:
            progress(done, len(files))
    return CrystalDataset(name=str(path), crystals=crystals, ids=ids, sources=sources, errors=errors)


def read_extxyz(
    path: Path, *, limits: PlausibilityLimits | None = None, progress: ProgressCallback | None = None
) -> CrystalDataset:
    """Read a multi-frame extended XYZ file; numeric scalar ``info`` entries become properties."""
    from ase.io import read

    try:
        frames = read(str(path), index=":", format="extxyz")
    except Exception as exc:  # ase raises many types for malformed files
        raise DatasetError(f"cannot read {path} as extxyz: {type(exc).__name__}: {exc}") from None
    crystals, ids, sources, errors = [], [], [], []
    infos: list[dict[str, float]] = []
    for frame_number, atoms in enumerate(frames, start=1):
        where = f"{path.name} frame {frame_number}"
        try:
            crystal = Crystal.from_ase(atoms).right_handed()
            check_plausible(crystal, limits)
        except InvalidStructureError as exc:
            errors.append(RowError(where, exc.problem))
        else:
            crystals.append(crystal)
            ids.append(str(next((atoms.info[k] for k in ("material_id", "id", "crystaloop_id") if k in atoms.info), frame_number)))
            sources.append(where)
            infos.append({k: float(v) for k, v in atoms.info.items() if _is_number(v)})
        if progress is not None:
            progress(frame_number, len(frames))
    keys = sorted({k for info in infos for k in info} - {"id", "material_id"})
    properties = {k: np.array([info.get(k, np.nan) for info in infos], dtype=np.float64) for k in keys}
    return CrystalDataset(name=str(path), crystals=crystals, ids=ids, sources=sources, properties=properties, errors=errors)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool) and math.isfinite(float(value))
