"""Import a dataset into the candidate store: good rows in, bad rows reported, nothing lost.

Each structure becomes a :class:`Candidate` with status ``imported``; its numeric dataset columns
become :class:`Measurement` records from the oracle ``dataset:<name>`` (the source's DFT labels).
The store de-duplicates by canonical hash, so importing the same file twice adds nothing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from crystaloop import __version__
from crystaloop.data.crystal import PlausibilityLimits
from crystaloop.data.datasets import CrystalDataset, RowError, load_dataset
from crystaloop.data.datasets.readers import DatasetFormat
from crystaloop.data.records import Candidate, CandidateStatus, Measurement, Provenance
from crystaloop.data.store import CandidateStore

__all__ = ["ImportReport", "dataset_to_candidates", "import_dataset"]

logger = logging.getLogger(__name__)


@dataclass
class ImportReport:
    """What an import did: rows read, candidates added or already present, rows refused."""

    source: str
    read: int = 0
    added: int = 0
    existing: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every row was good and there was at least one (an empty or header-only file is not ok)."""
        return self.read > 0 and not self.errors


def dataset_to_candidates(dataset: CrystalDataset, *, oracle_name: str | None = None) -> list[Candidate]:
    """Wrap each structure of ``dataset`` as an imported candidate with its labels as measurements."""
    oracle = oracle_name or f"dataset:{_short_name(dataset.name)}"
    units = dataset.units
    candidates = []
    for i, (crystal, row_id, source) in enumerate(zip(dataset.crystals, dataset.ids, dataset.sources, strict=True)):
        measurements = tuple(
            Measurement(oracle=oracle, property=key, value=float(values[i]), units=units[key])
            for key, values in dataset.properties.items()
            if math.isfinite(values[i])
        )
        provenance = Provenance(component="data.import", version=__version__, source=f"{source} id={row_id}")
        candidates.append(
            Candidate(crystal=crystal, provenance=provenance, status=CandidateStatus.IMPORTED, measurements=measurements)
        )
    return candidates


def _short_name(name: str) -> str:
    """``perov_5/train`` stays as is; a path becomes ``parent/file`` (``mp_20/train.csv``)."""
    path = Path(name)
    return name if not path.exists() else f"{path.resolve().parent.name}/{path.name}"


def import_dataset(
    spec: str | Path,
    store: CandidateStore,
    *,
    fmt: DatasetFormat | None = None,
    limits: PlausibilityLimits | None = None,
    max_rows: int | None = None,
    parse_progress: Callable[[int, int], None] | None = None,
    chunk_size: int = 500,
    insert_progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Read ``spec`` (a path or shipped ``name/split``) and add its good structures to ``store``.

    Rows that fail to parse or fail the plausibility limits are listed in the report and never
    stop the import. Insertion is chunked; each chunk commits on its own, so an interrupted import
    keeps what it wrote and a re-run adds only the rest.
    """
    dataset = load_dataset(spec, fmt=fmt, limits=limits, max_rows=max_rows, progress=parse_progress)
    report = ImportReport(source=str(spec), read=len(dataset), errors=list(dataset.errors))
    candidates = dataset_to_candidates(dataset)
    for start in range(0, len(candidates), chunk_size):
        result = store.add_many(candidates[start : start + chunk_size])
        report.added += result.added
        report.existing += result.existing
        if insert_progress is not None:
            insert_progress(min(start + chunk_size, len(candidates)), len(candidates))
    for error in report.errors:
        logger.debug("skipped %s", error)
    return report
