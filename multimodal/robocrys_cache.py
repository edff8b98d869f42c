"""A precomputed, shipped cache of robocrys descriptions, read without robocrys installed.

robocrys (Ganose & Jain, "Robocrystallographer: automated crystal structure text descriptions
and analysis", MRS Communications 9, 874–881, 2019) writes fluent, mineral-aware descriptions
but takes seconds per structure, far too slow to run inside training. :func:`build_cache`
therefore runs it once, offline, over a list of crystals and appends one JSON record per
structure to a gzip-compressed JSON-lines file::

    {"hash": "<canonical sha256>", "formula": "SrTiO3", "description": "...", "seconds": 6.1}
    {"hash": "...", "formula": "...", "error": "ValueError: ...", "seconds": 0.4}

Records are keyed by :meth:`~crystaloop.data.crystal.Crystal.canonical_hash`, so a lookup does
not depend on site order, orientation or cell choice of the query. Each record is appended as its
own gzip member and flushed, so a killed run loses at most the structure in progress and a later
run with ``resume=True`` skips what is already recorded (a truncated last member is dropped and
the file rewritten before appending). When a run ends normally the file is compacted into one
gzip member (better compression). A structure robocrys fails on is recorded with its error and
skipped on resume as well.

:func:`load_cache` reads a file into ``{hash: description}`` (failures left out);
:func:`shipped_cache` merges the files shipped under ``multimodal/shipped/robocrys/``.
:func:`add_robocrys_variants` swaps robocrys descriptions into the training variants of
:class:`~crystaloop.multimodal.features.DatasetViews` (the full description, column 0, is never
touched) for :mod:`.training`.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import time
import warnings
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crystaloop.data.crystal import Crystal
from crystaloop.data.errors import CrystaloopError

if TYPE_CHECKING:
    from crystaloop.multimodal.features import DatasetViews

__all__ = [
    "SHIPPED_ROBOCRYS_DIR",
    "BuildReport",
    "robocrys_available",
    "robocrys_describe",
    "build_cache",
    "read_records",
    "load_cache",
    "shipped_cache",
    "cached_description",
    "add_robocrys_variants",
]

logger = logging.getLogger(__name__)

SHIPPED_ROBOCRYS_DIR = Path(__file__).resolve().parent / "shipped" / "robocrys"
_NUMPY_REPR = re.compile(r"np\.(?:int|float|uint)\d*\(([-+0-9.e]+)\)")
_INSTALL_HINT = "install the optional extra: pip install 'crystaloop[robocrys]'"


def robocrys_available() -> bool:
    """Whether robocrys can be imported (only :func:`build_cache` needs it)."""
    try:
        import robocrys  # noqa: F401
    except ImportError:
        return False
    return True


@lru_cache(maxsize=1)
def _robocrys_tools() -> tuple[Any, Any]:
    """One StructureCondenser and one StructureDescriber, reused (building them loads robocrys' databases)."""
    try:
        from robocrys import StructureCondenser, StructureDescriber
        from robocrys.condense import molecule
    except ImportError as exc:
        raise CrystaloopError(f"robocrys is not installed ({exc}); {_INSTALL_HINT}") from None

    # Offline: robocrys would ask PubChem online to name molecules missing from its local table.
    molecule.MoleculeNamer.get_name_from_pubchem = lambda self, smiles: None  # type: ignore[method-assign]
    return StructureCondenser(), StructureDescriber()


def robocrys_describe(crystal: Crystal) -> str:
    """The robocrys description of ``crystal`` (offline, its warnings silenced); 4–25 s each."""
    condenser, describer = _robocrys_tools()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)  # pymatgen/robocrys log chatter per structure
        try:
            condensed = condenser.condense_structure(crystal.to_pymatgen())
            text = str(describer.describe(condensed)).strip()
        finally:
            logging.disable(previous)
    # robocrys formats some integers with repr(), which numpy ≥ 2 spells "np.int64(1)"
    return _NUMPY_REPR.sub(r"\1", text)


def robocrys_version() -> str:
    from importlib.metadata import version

    return f"robocrys {version('robocrys')}"


@dataclass
class BuildReport:
    """What one :func:`build_cache` run did; ``seconds`` are wall times of the structures it described."""

    described: int = 0
    failed: int = 0
    already_cached: int = 0
    remaining: int = 0  # left undone when the time budget ran out
    seconds: list[float] = field(default_factory=list)

    @property
    def mean_seconds(self) -> float:
        return float(np.mean(self.seconds)) if self.seconds else float("nan")


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Every complete record of a cache file, in file order (a truncated tail is ignored)."""
    path = Path(path)
    if not path.is_file():
        raise CrystaloopError(f"no robocrys cache at {path}")
    data, chunks = path.read_bytes(), []
    while data:
        member = zlib.decompressobj(wbits=31)  # one gzip member
        try:
            chunk = member.decompress(data)
        except zlib.error:
            logger.warning("%s: unreadable bytes after %d members ignored", path, len(chunks))
            break
        if not member.eof:
            logger.warning("%s: truncated last member ignored (an interrupted write)", path)
            break
        chunks.append(chunk)
        data = member.unused_data
    records = []
    for number, line in enumerate(b"".join(chunks).decode().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            logger.warning("%s: line %d is not JSON, ignored", path, number)
            continue
        if isinstance(record, dict) and isinstance(record.get("hash"), str):
            records.append(record)
    return records


def load_cache(path: str | Path) -> dict[str, str]:
    """``{canonical hash: robocrys description}`` of a cache file (structures that failed are left out)."""
    return {r["hash"]: r["description"] for r in read_records(path) if isinstance(r.get("description"), str)}


def shipped_cache(folder: str | Path = SHIPPED_ROBOCRYS_DIR) -> dict[str, str]:
    """All shipped caches (``*.jsonl.gz`` under ``folder``) merged; empty when none is shipped."""
    merged: dict[str, str] = {}
    for path in sorted(Path(folder).glob("*.jsonl.gz")):
        merged.update(load_cache(path))
    return merged


def cached_description(crystal: Crystal, cache: Mapping[str, str]) -> str | None:
    """The cached description of ``crystal`` (by canonical hash), or None."""
    return cache.get(crystal.canonical_hash())


def _write_members(path: Path, records: Iterable[dict[str, Any]], *, mode: str) -> None:
    with gzip.open(path, mode + "t", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def _compact(path: Path, records: Sequence[dict[str, Any]]) -> None:
    """Rewrite ``path`` as one gzip member holding ``records`` (atomic replace)."""
    partial = path.with_name(path.name + ".partial")
    _write_members(partial, records, mode="w")
    partial.replace(path)


def build_cache(
    crystals: Sequence[Crystal],
    out_path: str | Path,
    *,
    resume: bool = True,
    time_budget_s: float | None = None,
    progress: bool = True,
    describe: Callable[[Crystal], str] = robocrys_describe,
    source: str | None = None,
) -> BuildReport:
    """Describe ``crystals`` (duplicates by canonical hash once) and append the records to ``out_path``.

    Args:
        crystals: structures to describe, in the order to work through them.
        out_path: the ``.jsonl.gz`` cache (created with its folder if missing).
        resume: skip structures already recorded in ``out_path`` (else start the file anew).
        time_budget_s: start no new structure after this many seconds of wall time.
        progress: show a progress bar.
        describe: crystal → text (robocrys by default; tests inject a fast one).
        source: recorded with each entry (default the robocrys version, or the callable's name).
    """
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if time_budget_s is not None and time_budget_s <= 0:
        raise CrystaloopError(f"time_budget_s={time_budget_s}: must be positive (seconds) or None")
    if source is None:
        source = robocrys_version() if describe is robocrys_describe else getattr(describe, "__name__", "describer")
    done: set[str] = set()
    if resume and out.is_file():
        records = read_records(out)
        done = {r["hash"] for r in records}
        _compact(out, records)  # drops a truncated tail so appended members follow clean ones
    elif out.exists():
        out.unlink()
    report = BuildReport()
    todo: list[tuple[str, Crystal]] = []
    for crystal in crystals:
        key = crystal.canonical_hash()
        if key in done:
            report.already_cached += 1
        else:
            done.add(key)
            todo.append((key, crystal))
    from crystaloop.data.progress import progress_bar

    started = time.monotonic()
    with progress_bar(progress) as bar:
        task = bar.add_task("robocrys descriptions", total=len(todo))
        for position, (key, crystal) in enumerate(todo):
            if time_budget_s is not None and time.monotonic() - started >= time_budget_s:
                report.remaining = len(todo) - position
                logger.info(
                    "time budget %.0f s spent: %d structures left for a later run", time_budget_s, report.remaining
                )
                break
            tick = time.monotonic()
            record: dict[str, Any] = {"hash": key, "formula": crystal.reduced_formula}
            try:
                record["description"] = describe(crystal)
                report.described += 1
            except Exception as exc:  # noqa: BLE001 - any failure of the describer is recorded and skipped
                record["error"] = f"{type(exc).__name__}: {exc}"[:500]
                report.failed += 1
                logger.warning("%s (%s): %s", crystal.reduced_formula, key[:12], record["error"])
            record["seconds"] = round(time.monotonic() - tick, 2)
            record["source"] = source
            report.seconds.append(record["seconds"])
            _write_members(out, [record], mode="a")  # one flushed member per structure: nothing is lost
            bar.advance(task)
            if (position + 1) % 10 == 0:
                logger.info("%d/%d described, %.1f s each on average", position + 1, len(todo), report.mean_seconds)
    if out.is_file():
        _compact(out, read_records(out))
    return report


def add_robocrys_variants(
    views: DatasetViews,
    crystals: Sequence[Crystal],
    cache: Mapping[str, str],
    *,
    seed: int = 0,
    share: float = 0.5,
) -> DatasetViews:
    """Views whose training variants are, for crystals with a cache entry, robocrys texts with probability ``share``.

    Column 0 (the full description of our describer, used for evaluation) is kept; each of
    columns 1..V of a cached crystal becomes its robocrys description on a seeded coin flip, and
    only those texts are encoded anew with MiniLM. Crystals without an entry, and all views when
    there are no variant columns, are returned unchanged.
    """
    from crystaloop.multimodal.features import DatasetViews

    if len(crystals) != len(views):
        raise CrystaloopError(f"{len(crystals)} crystals for {len(views)} views; expected one crystal per view")
    n_columns = views.text_features.shape[1]
    rng = np.random.default_rng(seed)
    swaps: list[tuple[int, int, str]] = []
    for row, crystal in enumerate(crystals):
        text = cached_description(crystal, cache)
        if text is None or n_columns < 2:
            continue
        swaps.extend((row, column, text) for column in range(1, n_columns) if rng.random() < share)
    if not swaps:
        return views
    from crystaloop.multimodal.text import MiniLMLayerFeatures

    features = views.text_features.copy()
    texts = [list(group) for group in views.texts]
    encoded = MiniLMLayerFeatures()([text for _, _, text in swaps]).astype(features.dtype)
    for (row, column, text), feature in zip(swaps, encoded, strict=True):
        features[row, column] = feature
        texts[row][column] = text
    logger.info("%s: %d training variants are robocrys descriptions", views.name, len(swaps))
    return DatasetViews(views.name, views.patterns, texts, features)
