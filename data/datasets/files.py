"""Single structure files, read whole and written with what is known about each structure.

Readers (every structure in the file; a bad one is a :class:`RowError`, the others are kept):

* **CIF** (``.cif``): every ``data_`` block; the block name is the id.
* **POSCAR** (``POSCAR*``, ``CONTCAR*``, ``*.vasp``, ``*.poscar``): one structure.
* **JSON** (``.json``), any of
  - a list of pymatgen ``Structure.as_dict()`` dicts (what ``crystaloop generate --out x.json``
    writes; crystaloop's own fields sit under ``properties["crystaloop"]``: ``id``, ``formula``,
    ``provenance``, ``condition``), or one such dict;
  - an OPTIMADE response (``{"data": [...]}``) or a list of OPTIMADE structure documents
    (``attributes.lattice_vectors``, ``cartesian_site_positions``, ``species_at_sites``), e.g.
    ``crystaloop db query --format json``;
  - the older crystaloop layout: a list of ``{"id", "crystal": Crystal.to_dict(), ...}`` rows.

Writers (:func:`write_structure_file`, by extension):

* **CIF**: one ``data_`` block per structure, symmetrised with pymatgen's ``CifWriter``
  (spglib, ``symprec`` Å, angle tolerance 5°; the cell is kept as given, P1 when spglib finds
  nothing or when the symmetrised text would not read back to the same sites: a cell only
  nearly symmetric at ``symprec``), each block carrying ``# key: value`` comment lines (generator, checkpoint, seed ...).
* **extxyz**: one frame per structure; scalar ``info`` per frame (status, ids, provenance) and,
  where given, ``energy`` (eV), ``forces`` (eV/Å, per atom) and ``stress`` (eV/Å³, Voigt) as
  ASE calculator results, which ``ase.io.read`` returns on ``atoms.calc``.
* **JSON**: the pymatgen layout above.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crystaloop.data.crystal import Crystal, PlausibilityLimits, check_plausible
from crystaloop.data.datasets.base import CrystalDataset, RowError
from crystaloop.data.errors import CrystaloopError, DatasetError, InvalidStructureError

__all__ = ["STRUCTURE_FILE_SUFFIXES", "WRITE_SUFFIXES", "is_structure_file", "read_structure_file", "write_structure_file", "CIF_SYMPREC"]

STRUCTURE_FILE_SUFFIXES = (".cif", ".json", ".vasp", ".poscar")
WRITE_SUFFIXES = (".cif", ".xyz", ".extxyz", ".json")
CIF_SYMPREC = 0.1
"""spglib distance tolerance (Å) of the symmetrised CIFs crystaloop writes."""
_DATA_LINE = re.compile(r"(?im)^[ \t]*data_")
_ATOM_SITE = re.compile(r"(?im)^[ \t]*_atom_site_")


def is_structure_file(path: Path) -> bool:
    """A single CIF / POSCAR / JSON structure file (not a folder, CSV or extxyz)."""
    name = path.name.upper()
    return path.is_file() and (path.suffix.lower() in STRUCTURE_FILE_SUFFIXES or name.startswith(("POSCAR", "CONTCAR")))


def read_structure_file(path: Path, *, limits: PlausibilityLimits | None = None, progress=None) -> CrystalDataset:  # noqa: ANN001
    """Every structure of one CIF (all data blocks), POSCAR or JSON file (see the module docstring)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None
    suffix = path.suffix.lower()
    if suffix == ".cif":
        blocks = _cif_blocks(text, path)
        with_sites = [(n, b) for n, b in blocks if _ATOM_SITE.search(b)]
        blocks = with_sites or blocks  # a block without atom sites (data_global ...) is metadata, not a bad structure
        if len(blocks) == 1:
            blocks = [(path.stem, blocks[0][1])]
        entries = [(name, lambda block=block: _parse_text(block, "cif", limits)) for name, block in blocks]
    elif suffix == ".json":
        entries = _json_entries(text, path, limits)
    else:
        entries = [(path.stem, lambda: _parse_text(text, "poscar", limits))]
    crystals, ids, sources, errors, extras = [], [], [], [], []
    for done, (ident, parse) in enumerate(entries, start=1):
        where = path.name if len(entries) == 1 else f"{path.name} structure {done} ({ident})"
        try:
            crystal, numbers = _as_pair(parse())
        except InvalidStructureError as exc:
            errors.append(RowError(where, exc.problem))
        else:
            crystals.append(crystal)
            ids.append(ident)
            sources.append(where)
            extras.append(numbers)
        if progress is not None:
            progress(done, len(entries))
    keys = sorted({k for e in extras for k in e})
    properties = {k: np.array([e.get(k, np.nan) for e in extras], dtype=np.float64) for k in keys}
    return CrystalDataset(name=str(path), crystals=crystals, ids=ids, sources=sources, properties=properties, errors=errors)


def _as_pair(parsed: Crystal | tuple[Crystal, dict[str, float]]) -> tuple[Crystal, dict[str, float]]:
    return parsed if isinstance(parsed, tuple) else (parsed, {})


def _parse_text(text: str, fmt: str, limits: PlausibilityLimits | None) -> Crystal:
    from crystaloop.data.datasets.readers import parse_structure_text

    return parse_structure_text(text, fmt, limits)  # type: ignore[arg-type]


def _cif_blocks(text: str, path: Path) -> list[tuple[str, str]]:
    """(name, text) per ``data_`` block; comments before the first block go with it."""
    starts = [m.start() for m in _DATA_LINE.finditer(text)]
    if not starts:
        return [(path.stem, text)]
    bounds = [0, *starts[1:], len(text)]
    blocks = []
    for number, (start, end) in enumerate(zip(bounds[:-1], bounds[1:], strict=True), start=1):
        block = text[start:end]
        match = re.search(r"(?im)^[ \t]*data_(\S*)", block)
        name = match.group(1) if match and match.group(1) else f"{path.stem}-{number}"
        blocks.append((name, block))
    return blocks


def _json_entries(text: str, path: Path, limits: PlausibilityLimits | None) -> list:
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"cannot read {path} as JSON: {exc}") from None
    if isinstance(payload, Mapping) and isinstance(payload.get("data"), list | Mapping):
        payload = payload["data"]  # an OPTIMADE response
    items = payload if isinstance(payload, list) else [payload]
    entries = []
    for number, item in enumerate(items, start=1):
        ident = _json_id(item, number)
        entries.append((ident, lambda item=item: _json_crystal(item, limits)))
    if not entries:
        raise DatasetError(f"{path} holds an empty JSON list; expected structures")
    return entries


def _json_id(item: Any, number: int) -> str:
    if not isinstance(item, Mapping):
        return str(number)
    ours = (item.get("properties") or {}).get("crystaloop") if isinstance(item.get("properties"), Mapping) else None
    for value in ((ours or {}).get("id"), item.get("id")):
        if isinstance(value, str | int) and str(value):
            return str(value)
    return str(number)


def _json_crystal(item: Any, limits: PlausibilityLimits | None) -> tuple[Crystal, dict[str, float]]:
    if not isinstance(item, Mapping):
        raise InvalidStructureError(f"expected a structure object, got {type(item).__name__}")
    numbers: dict[str, float] = {}
    try:
        if "lattice" in item and "sites" in item:  # pymatgen Structure.as_dict()
            from pymatgen.core import Structure

            crystal = Crystal.from_pymatgen(Structure.from_dict(dict(item)))
            props = item.get("properties") or {}
            numbers = {k: float(v) for k, v in props.items() if _is_number(v)} if isinstance(props, Mapping) else {}
        elif isinstance(item.get("attributes"), Mapping):  # OPTIMADE structure document
            crystal = _from_optimade(item["attributes"])
        elif isinstance(item.get("crystal"), Mapping):  # older crystaloop rows
            crystal = Crystal.from_dict(dict(item["crystal"]))
        else:
            raise InvalidStructureError(
                f"unknown JSON structure object with keys {sorted(item)[:8]}; expected a pymatgen Structure dict "
                "('lattice', 'sites'), an OPTIMADE document ('attributes') or a crystaloop row ('crystal')"
            )
    except CrystaloopError:
        raise
    except Exception as exc:  # pymatgen/numpy raise many types for malformed dicts
        raise InvalidStructureError(f"malformed structure object ({type(exc).__name__}: {exc})") from None
    check_plausible(crystal, limits)
    return crystal, numbers


def _from_optimade(attributes: Mapping[str, Any]) -> Crystal:
    missing = [k for k in ("lattice_vectors", "cartesian_site_positions", "species_at_sites") if attributes.get(k) is None]
    if missing:
        raise InvalidStructureError(f"OPTIMADE document lacks {missing}; request those response_fields")
    species = {s["name"]: s["chemical_symbols"] for s in attributes.get("species") or [] if isinstance(s, Mapping)}
    symbols = []
    for name in attributes["species_at_sites"]:
        chem = species.get(name, [name])
        if len(chem) != 1:
            raise InvalidStructureError(f"species {name!r} is a mixture {chem}; only ordered sites are supported")
        symbols.append(chem[0])
    from crystaloop.data.crystal import atomic_number

    numbers = [atomic_number(s) for s in symbols]
    return Crystal.from_cartesian(attributes["lattice_vectors"], attributes["cartesian_site_positions"], numbers)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool) and math.isfinite(float(value))


# ---------------------------------------------------------------------- writers
def write_structure_file(
    path: Path,
    crystals: Sequence[Crystal],
    *,
    ids: Sequence[str] | None = None,
    info: Sequence[Mapping[str, Any]] | None = None,
    results: Sequence[Mapping[str, Any] | None] | None = None,
    symprec: float = CIF_SYMPREC,
) -> None:
    """Write ``crystals`` as CIF, extxyz or JSON by the extension of ``path``.

    Args:
        ids: one id per structure (CIF block names, extxyz ``crystaloop_id``, JSON ``id``).
        info: per structure, JSON-able facts (provenance, status, condition): CIF comments, extxyz
            ``info`` (nested values as JSON text), JSON ``properties["crystaloop"]``.
        results: per structure ``{"energy": eV, "forces": (n, 3), "stress": (6,) or (3, 3)}`` (any
            subset, or ``None``): extxyz calculator results; JSON ``properties["crystaloop"]``.
        symprec: spglib tolerance (Å) for the symmetrised CIF.

    Raises:
        DatasetError: an extension other than .cif, .xyz, .extxyz, .json.
    """
    n = len(crystals)
    ids = list(ids) if ids is not None else [c.canonical_hash() for c in crystals]
    info = list(info) if info is not None else [{} for _ in range(n)]
    results = list(results) if results is not None else [None] * n
    if not len(ids) == len(info) == len(results) == n:
        raise ValueError(f"{n} structures need {n} ids, info and results, got {len(ids)}, {len(info)}, {len(results)}")
    suffix = path.suffix.lower()
    if suffix not in WRITE_SUFFIXES:
        raise DatasetError(f"{path}: unknown extension {suffix!r}; allowed: {', '.join(WRITE_SUFFIXES)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".cif":
        path.write_text("\n".join(_cif_block(c, i, facts, symprec) for c, i, facts in zip(crystals, ids, info, strict=True)))
    elif suffix in (".xyz", ".extxyz"):
        _write_extxyz(path, crystals, ids, info, results)
    else:
        rows = []
        for crystal, ident, facts, result in zip(crystals, ids, info, results, strict=True):
            row = crystal.to_pymatgen().as_dict()
            ours = {"id": ident, "formula": crystal.reduced_formula, **_jsonable(dict(facts))}
            if result:
                ours["results"] = _jsonable(dict(result))
            row["properties"] = {**(row.get("properties") or {}), "crystaloop": ours}
            rows.append(row)
        path.write_text(json.dumps(rows, indent=1))


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in np.asarray(value).tolist()] if isinstance(value, np.ndarray) else [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _cif_block(crystal: Crystal, ident: str, facts: Mapping[str, Any], symprec: float) -> str:
    import warnings

    from pymatgen.io.cif import CifWriter

    structure = crystal.to_pymatgen()
    note = f"spglib symprec={symprec} A, angle_tolerance=5 deg"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            text = str(CifWriter(structure, symprec=symprec, refine_struct=False))
    except Exception as exc:  # spglib can fail on degenerate cells; P1 is still a valid CIF
        note = f"P1 (spglib failed: {type(exc).__name__})"
        text = str(CifWriter(structure))
    else:
        if not _reads_back(text, structure):  # a nearly symmetric cell: exact operations would move or add atoms
            note = f"P1 (the cell is not symmetric enough to be written with operations at symprec={symprec} A)"
            text = str(CifWriter(structure))
    name = re.sub(r"\s+", "_", str(ident)) or crystal.reduced_formula
    comments = [f"# crystaloop id: {ident}", f"# symmetry: {note}"]
    comments += [f"# {key}: {_comment_value(value)}" for key, value in facts.items() if value is not None]
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("data_"))
    return "\n".join([f"data_{name}", *comments, *lines[head + 1:]]) + "\n"


def _reads_back(text: str, structure: Any) -> bool:
    """True when the CIF ``text`` parses to the sites of ``structure`` (same count and composition)."""
    import warnings

    from pymatgen.io.cif import CifParser

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = CifParser.from_str(text).parse_structures(primitive=False)
    except Exception:  # noqa: BLE001 - any parse failure means the symmetrised text is unusable
        return False
    return len(parsed) == 1 and len(parsed[0]) == len(structure) and parsed[0].composition == structure.composition


def _comment_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(_jsonable(value), sort_keys=True)
    return text.replace("\n", " ")


def _write_extxyz(path: Path, crystals, ids, info, results) -> None:  # noqa: ANN001
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    frames = []
    for crystal, ident, facts, result in zip(crystals, ids, info, results, strict=True):
        atoms = crystal.to_ase()
        atoms.info["crystaloop_id"] = str(ident)
        for key, value in facts.items():
            if value is None:
                continue
            atoms.info[key] = value if isinstance(value, str | int | float | bool) else json.dumps(_jsonable(value), sort_keys=True)
        calc = {k: np.asarray(v, dtype=np.float64) if k != "energy" else float(v)
                for k, v in (result or {}).items() if k in ("energy", "forces", "stress") and v is not None}
        if calc:
            atoms.calc = SinglePointCalculator(atoms, **calc)
        frames.append(atoms)
    write(str(path), frames, format="extxyz")
