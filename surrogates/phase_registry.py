"""`PhaseRegistry`: which cached oracle results are competing phases of a hull, and of what kind.

The oracle cache (:class:`~crystaloop.surrogates.oracles.cache.OracleCache`) holds every
structure an oracle relaxed; the registry, two tables in the same database, says which of them
were built as competing phases and which subsystems are complete:

* ``hull_phases``: (oracle key, input structure hash) → kind (``"prototype"`` or ``"known"``),
  label (the prototype's name, or the file and id a known phase came from) and formula;
* ``hull_systems``: (oracle key, chemical system) → the number of phases recorded and the
  seconds building it took, written once the subsystem's prototypes are done.

Everything in the cache that is neither (the campaign's own relaxations) counts as kind
``"campaign"``. Writes are idempotent (insert or replace), and the tables are created on first
use, tolerating another process creating them at the same moment.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import DateTime, Engine, Float, Integer, String, Text, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from crystaloop.surrogates.oracles.cache import OracleCache

__all__ = ["PhaseKind", "PHASE_KINDS", "RegisteredPhase", "PhaseRegistry"]

PhaseKind = Literal["prototype", "known"]
PHASE_KINDS: tuple[str, ...] = ("prototype", "known")


class _Base(DeclarativeBase):
    pass


class _PhaseRow(_Base):
    __tablename__ = "hull_phases"

    oracle_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    structure_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(Text, default="")
    formula: Mapped[str] = mapped_column(String(128), default="")


class _SystemRow(_Base):
    __tablename__ = "hull_systems"

    oracle_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    chemsys: Mapped[str] = mapped_column(String(256), primary_key=True)
    phases: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class RegisteredPhase:
    """A competing phase: the oracle cache's input hash, its kind, a label and its formula."""

    structure_hash: str
    kind: PhaseKind
    label: str
    formula: str


class PhaseRegistry:
    """The competing-phase tables in an oracle cache's database (see the module docstring)."""

    def __init__(self, cache: OracleCache) -> None:
        self.cache = cache
        self._ready = False
        self._lock = threading.Lock()

    @property
    def engine(self) -> Engine:
        """The cache's engine, with the registry's tables created."""
        engine = self.cache.engine
        if not self._ready:
            with self._lock:
                if not self._ready:
                    try:
                        _Base.metadata.create_all(engine, checkfirst=True)
                    except (OperationalError, ProgrammingError) as exc:  # created concurrently
                        if "already exists" not in str(exc):
                            raise
                    self._ready = True
        return engine

    def add(self, oracle_key: str, phases: Sequence[RegisteredPhase]) -> None:
        """Record phases (insert or replace)."""
        if not phases:
            return
        rows = [
            {"oracle_key": oracle_key, "structure_hash": p.structure_hash, "kind": p.kind, "label": p.label, "formula": p.formula}
            for p in phases
        ]
        self._upsert(_PhaseRow, rows, ("oracle_key", "structure_hash"))

    def kinds(self, oracle_key: str, structure_hashes: Iterable[str] | None = None) -> dict[str, RegisteredPhase]:
        """Structure hash → registered phase, for this oracle key (all of them, or those hashes)."""
        query = select(_PhaseRow).where(_PhaseRow.oracle_key == oracle_key)
        wanted = None if structure_hashes is None else set(structure_hashes)
        with Session(self.engine) as session:
            rows = session.scalars(query).all()
        return {
            r.structure_hash: RegisteredPhase(r.structure_hash, r.kind, r.label, r.formula)  # type: ignore[arg-type]
            for r in rows
            if wanted is None or r.structure_hash in wanted
        }

    def is_built(self, oracle_key: str, chemsys: str) -> bool:
        """Whether the prototype phases of ``chemsys`` (``"Ca-O"``) are built for this oracle key."""
        with Session(self.engine) as session:
            return session.get(_SystemRow, (oracle_key, chemsys)) is not None

    def built_systems(self, oracle_key: str) -> set[str]:
        """Every chemical system whose prototypes are built for this oracle key."""
        with Session(self.engine) as session:
            return set(session.scalars(select(_SystemRow.chemsys).where(_SystemRow.oracle_key == oracle_key)))

    def mark_built(self, oracle_key: str, chemsys: str, phases: int, seconds: float) -> None:
        """Record that ``chemsys`` is built (with ``phases`` phases, in ``seconds``)."""
        row = {
            "oracle_key": oracle_key,
            "chemsys": chemsys,
            "phases": phases,
            "seconds": float(seconds),
            "created_at": dt.datetime.now(dt.UTC),
        }
        self._upsert(_SystemRow, [row], ("oracle_key", "chemsys"))

    def _upsert(self, table, rows: list[dict], keys: tuple[str, ...]) -> None:
        engine = self.engine
        dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(table).values(rows)
        updates = {c: statement.excluded[c] for c in rows[0] if c not in keys}
        statement = statement.on_conflict_do_update(index_elements=list(keys), set_=updates)
        with Session(engine) as session, session.begin():
            session.execute(statement)
