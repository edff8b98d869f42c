"""The oracle port and a generic oracle around any ASE calculator.

An :class:`Oracle` turns crystals into :class:`~crystaloop.data.records.Measurement` records:
a calculation that fails (the calculator raises, returns NaN, the energy explodes, the
relaxation times out or the structure falls apart) is a Measurement with ``status="failed"``
and a reason; only infrastructure faults (the calculator cannot be created, the cache cannot be
written) raise :class:`~crystaloop.data.errors.OracleError`.

:class:`ASEOracle` is that port for any ASE calculator, MLIP or DFT. It creates the calculator
lazily through a factory, **one per thread** (``threading.local``): an ASE calculator keeps the
atoms and results of its last call, so two threads sharing one read each other's forces
(Prefect runs oracle tasks in threads). Each thread that computes gets its own calculator on
first use and reuses it afterwards. Memory: a factory that loads its own model pays that model
once per thread (up to ~0.8 GB per CHGNet instance on CPU); the CHGNet and SevenNet oracles
therefore load their model once and only wrap it in a per-thread calculator (see
:class:`SharedModel`), which costs a few kB. To plug in DFT, pass a factory returning a
configured calculator and describe its physics in ``settings`` (they go into the cache key)::

    from ase.calculators.espresso import Espresso, EspressoProfile

    def make_qe():
        profile = EspressoProfile(command="mpirun -n 8 pw.x", pseudo_dir="/opt/pseudo")
        return Espresso(profile=profile, input_data={"system": {"ecutwfc": 60}},
                        pseudopotentials={"Si": "Si.pbe-n-rrkjus_psl.1.0.0.UPF"}, kpts=(6, 6, 6))

    oracle = ASEOracle("qe-pbe", make_qe, relax=RelaxConfig(fmax=0.05, timeout_s=3600),
                       cache=OracleCache(), settings={"ecutwfc": 60, "kpts": [6, 6, 6], "xc": "PBE"})
    measurements = oracle.evaluate(crystals)

(``ase.calculators.vasp.Vasp(xc="PBE", encut=520, kpts=(6, 6, 6))`` works the same way.) The
timeout is checked between optimizer steps, so a single DFT call is not interrupted; give the
DFT code its own wall-time limit.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from crystaloop.data.crystal import Crystal
from crystaloop.data.errors import CrystaloopError, OracleError
from crystaloop.data.progress import progress_bar
from crystaloop.data.records import Measurement
from crystaloop.data.seeding import torch_threads
from crystaloop.surrogates.oracles.cache import CachedResult, OracleCache
from crystaloop.surrogates.oracles.relax import Outcome, relax_atoms, single_point_atoms

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

__all__ = [
    "RelaxConfig",
    "Relaxation",
    "RelaxationStatus",
    "Oracle",
    "ASEOracle",
    "SharedModel",
    "ENERGY_UNITS",
    "package_version",
    "torch_threads",
]

logger = logging.getLogger(__name__)

ModelT = TypeVar("ModelT")
ENERGY_UNITS = "eV/atom"
RELAXATION = "relaxation"
SINGLE_POINT = "single_point"


def package_version(name: str) -> str:
    """Installed version of distribution ``name`` (for cache keys), ``"not installed"`` if absent."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


class RelaxConfig(BaseModel):
    """How an oracle relaxes a structure and when it calls the result a failure.

    Attributes:
        optimizer: ASE optimizer, ``"FIRE"`` or ``"BFGS"``.
        fmax: convergence criterion on the largest force, eV/Å.
        max_steps: most optimizer steps; 0 gives the energy of the input structure.
        relax_cell: relax the cell too (ASE ``FrechetCellFilter``), not only positions.
        timeout_s: wall-clock limit of one relaxation in seconds, checked between steps.
        max_abs_energy_per_atom: an energy beyond ±this (eV/atom) counts as an explosion.
        max_volume_factor: the volume may grow or shrink by at most this factor.
        min_distance: shortest allowed interatomic distance (Å), checked before the first
            calculation (overlapping inputs are refused) and after the relaxation; 0 disables.
        max_cell_strain: the largest principal Green–Lagrange strain of the cell between input
            and output (dimensionless, absolute value; 0.5 is a lattice direction stretched by
            √2, −0.375 one halved) beyond which the relaxation fails: the structure has turned
            into a different one (:func:`~crystaloop.surrogates.oracles.relax.max_cell_strain`).

    A relaxation that stops at ``max_steps`` without reaching ``fmax`` is ``unconverged``, not
    ``ok``; ``max_steps=0`` (the input's energy) is ``ok``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    optimizer: Literal["FIRE", "BFGS"] = "FIRE"
    fmax: float = Field(0.1, gt=0, description="force convergence criterion, eV/Å")
    max_steps: int = Field(200, ge=0, description="most optimizer steps")
    relax_cell: bool = Field(True, description="relax the cell with ASE's FrechetCellFilter")
    timeout_s: float = Field(120.0, gt=0, description="wall-clock limit per structure, seconds")
    max_abs_energy_per_atom: float = Field(50.0, gt=0, description="explosion threshold, eV/atom")
    max_volume_factor: float = Field(3.0, gt=1, description="largest allowed volume ratio either way")
    min_distance: float = Field(0.5, ge=0, description="shortest allowed interatomic distance, Å")
    max_cell_strain: float = Field(
        0.5, gt=0, description="largest allowed principal Green-Lagrange strain of the cell, dimensionless"
    )


RelaxationStatus = Literal["ok", "failed", "unconverged"]
"""``ok``: converged (or ``max_steps=0``); ``failed``: no usable result, ``reason`` says why;
``unconverged``: stopped at ``max_steps`` short of ``fmax``, the last energy kept for inspection."""


@dataclass(frozen=True)
class Relaxation:
    """The result of relaxing one structure.

    Attributes:
        initial_hash: canonical hash of the input crystal.
        final: the relaxed crystal, ``None`` when the relaxation failed.
        energy_per_atom: energy of the final structure, eV/atom (``None`` when failed; the last
            step's when unconverged).
        status: see :data:`RelaxationStatus`.
        reason: why it failed, or a note (``"not converged after 200 steps ..."``).
        steps: optimizer steps taken.
        fmax: largest force the optimizer saw at the end, eV/Å.
        seconds: wall-clock time of the computation (of the original one when cached).
        initial_energy_per_atom: energy of the input structure, eV/atom.
        initial_fmax: largest force on the input structure, eV/Å.
        converged: the optimizer reached ``fmax`` within ``max_steps``.
        cached: this result was read from the cache.
    """

    initial_hash: str
    final: Crystal | None
    energy_per_atom: float | None
    status: RelaxationStatus
    reason: str = ""
    steps: int = 0
    fmax: float | None = None
    seconds: float = 0.0
    initial_energy_per_atom: float | None = None
    initial_fmax: float | None = None
    converged: bool = False
    cached: bool = False

    def to_measurement(self, oracle: str) -> Measurement:
        """The relaxed energy as a Measurement (property ``"energy_per_atom"``, eV/atom, same
        status; an unconverged one keeps its last energy)."""
        return Measurement(
            oracle=oracle,
            property="energy_per_atom",
            value=self.energy_per_atom if self.status != "failed" else None,
            units=ENERGY_UNITS,
            status=self.status,
            reason=self.reason,
        )


@runtime_checkable
class Oracle(Protocol):
    """The oracle port: ``evaluate(crystals)`` gives, crystal by crystal in order, one
    Measurement per name in :attr:`properties` (in that order), so a batch of n crystals gives
    ``n * len(properties)`` Measurements.

    A failed calculation is a Measurement with ``status="failed"``; only infrastructure faults
    raise (:class:`~crystaloop.data.errors.OracleError`). The loop calls nothing else: the ASE
    oracle (relaxed energy), :class:`~crystaloop.surrogates.oracles.mlip.MLIPOracle` (energy, hull
    distance, bulk modulus), :class:`~crystaloop.surrogates.oracles.replay.ReplayOracle` (dataset
    labels) and :class:`~crystaloop.surrogates.testing.MockOracle` all implement it.
    """

    name: str
    properties: tuple[str, ...]

    def evaluate(self, crystals: Sequence[Crystal]) -> list[Measurement]: ...


class ASEOracle:
    """An oracle around any ASE calculator (see the module docstring for a DFT example).

    Args:
        name: the oracle's name, written into every Measurement.
        calculator_factory: makes an ASE calculator; called once per computing thread, on
            that thread's first use (one at a time).
        relax: relaxation settings; ``None`` → :class:`RelaxConfig` defaults.
        cache: where results persist; ``None`` → nothing is cached.
        settings: JSON-able description of the calculator's physics (model, version, DFT
            parameters); hashed into :meth:`cache_key` so changed settings never reuse results.
        progress_threshold: show a progress bar for batches larger than this.
        infrastructure_errors: exception types from the calculator that mean the oracle itself
            is broken (they raise :class:`OracleError`); any other exception fails only the
            structure that caused it.
        blas_threads: OpenBLAS threads (numpy/scipy) while computing; ``None`` leaves them
            alone. The cell filter does many 3×3 matrix functions, which run several times
            faster single-threaded, most of all on a busy machine; torch's own threads are
            not affected.
    """

    def __init__(
        self,
        name: str,
        calculator_factory: Callable[[], Calculator],
        *,
        relax: RelaxConfig | None = None,
        cache: OracleCache | None = None,
        settings: Mapping[str, Any] | None = None,
        progress_threshold: int = 4,
        infrastructure_errors: tuple[type[BaseException], ...] | None = None,
        blas_threads: int | None = 1,
    ) -> None:
        if not name:
            raise ValueError("an oracle needs a non-empty name")
        self.name = name
        self.relax_config = relax or RelaxConfig()
        self.cache = cache
        self.settings = dict(settings or {})
        self.progress_threshold = progress_threshold
        self.blas_threads = blas_threads
        self._factory = calculator_factory
        self._local = threading.local()  # .calculator: this thread's own
        self._lock = threading.Lock()
        self.calculators_made = 0
        """How many calculators the factory made (one per thread that computed)."""
        if infrastructure_errors is None:
            from ase.calculators.calculator import CalculatorSetupError

            infrastructure_errors = (CalculatorSetupError, ImportError, OracleError)
        self.infrastructure_errors = infrastructure_errors

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, key={self.cache_key()!r})"

    # ------------------------------------------------------------------ identity
    def cache_key(self, config: RelaxConfig | None = None) -> str:
        """``"<name>:<16 hex>"``: the name plus a hash of ``settings`` and the relax config
        (``config`` or this oracle's), the key its results are cached under."""
        payload = {"name": self.name, "settings": self.settings, "relax": (config or self.relax_config).model_dump()}
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
        return f"{self.name}:{digest[:16]}"

    @property
    def calculator(self) -> Calculator:
        """This thread's ASE calculator, created by the factory on the thread's first access
        and then reused by it; never shared between threads (see the module docstring).

        Factories run one at a time (under a lock), so a factory need not be thread-safe.

        Raises:
            OracleError: the factory failed (missing weights, missing executable...).
        """
        calculator = getattr(self._local, "calculator", None)
        if calculator is None:
            with self._lock:
                started = time.perf_counter()
                try:
                    calculator = self._factory()
                except Exception as exc:
                    raise OracleError(f"could not create the calculator of oracle {self.name!r}: {exc}") from exc
                self.calculators_made += 1
            self._local.calculator = calculator
            logger.info(
                "oracle %s: calculator %d ready in %.2f s (thread %s)",
                self.name, self.calculators_made, time.perf_counter() - started, threading.current_thread().name,
            )
        return calculator

    # ------------------------------------------------------------------ the port
    properties: tuple[str, ...] = ("energy_per_atom",)

    def evaluate(self, crystals: Sequence[Crystal]) -> list[Measurement]:
        """Relax each crystal and report its relaxed energy per atom (eV/atom), in order."""
        return [r.to_measurement(self.name) for r in self.relax(crystals)]

    def relax(
        self, crystals: Sequence[Crystal], *, config: RelaxConfig | None = None, use_cache: bool = True
    ) -> list[Relaxation]:
        """Relax each crystal (``config`` overrides this oracle's relax settings); cached
        results are reused, new ones written. One failure never stops the batch."""
        config = config or self.relax_config
        return self._batch(crystals, RELAXATION, config, use_cache, lambda c: self._relax_one(c, config))

    def single_point(self, crystals: Sequence[Crystal], *, use_cache: bool = True) -> list[Measurement]:
        """Energy per atom (eV/atom) of each crystal as given, no relaxation."""
        config = self.relax_config
        results = self._batch(crystals, SINGLE_POINT, config, use_cache, lambda c: self._single_point_one(c, config))
        return [r.to_measurement(self.name) for r in results]

    # ------------------------------------------------------------------ internals
    def _batch(
        self,
        crystals: Sequence[Crystal],
        prop: str,
        config: RelaxConfig,
        use_cache: bool,
        compute: Callable[[Crystal], Relaxation],
    ) -> list[Relaxation]:
        crystals = list(crystals)
        hashes = [c.canonical_hash() for c in crystals]
        key = self.cache_key(config)
        cache = self.cache if use_cache else None
        known = cache.get_many(key, hashes, prop) if cache is not None else {}
        results: dict[str, Relaxation] = {h: _from_cached(h, known[h]) for h in known}
        todo = [(h, c) for h, c in zip(hashes, crystals, strict=True) if h not in results]
        if known:
            logger.info("oracle %s: %d of %d %s results from the cache", self.name, len(known), len(crystals), prop)
        with self._compute_scope(), progress_bar(len(todo) > self.progress_threshold) as progress:
            task = progress.add_task(f"{self.name} {prop}", total=len(todo))
            for structure_hash, crystal in todo:
                if structure_hash in results:  # a duplicate within the batch
                    progress.advance(task)
                    continue
                result = compute(crystal)
                results[structure_hash] = result
                if result.status != "ok":
                    logger.info("oracle %s: %s %s %s: %s", self.name, prop, structure_hash[:12], result.status, result.reason)
                if cache is not None:
                    cache.put(key, structure_hash, prop, _to_cached(result, crystal))
                progress.advance(task)
        return [results[h] for h in hashes]

    def _compute_scope(self) -> AbstractContextManager[object]:
        """Context entered around each batch's calculations (thread limits); subclasses extend it."""
        return _blas_limit(self.blas_threads)

    def _guarded(self, crystal: Crystal, run: Callable[[], Outcome]) -> tuple[Outcome | None, str, float]:
        """Run ``run`` and turn a calculator exception into a failure reason (or re-raise it as
        an infrastructure fault)."""
        started = time.perf_counter()
        calculator = self.calculator
        try:
            outcome = run()
        except self.infrastructure_errors as exc:
            raise OracleError(f"oracle {self.name!r} cannot compute: {type(exc).__name__}: {exc}") from exc
        except Exception as exc:  # a failed calculation of this structure, not of the oracle
            logger.debug("oracle %s: calculator raised on %r", self.name, crystal, exc_info=True)
            reset = getattr(calculator, "reset", None)
            if callable(reset):
                reset()
            return None, f"calculator raised {type(exc).__name__}: {exc}", time.perf_counter() - started
        return outcome, outcome.reason, time.perf_counter() - started

    def _relax_one(self, crystal: Crystal, config: RelaxConfig) -> Relaxation:
        outcome, reason, seconds = self._guarded(
            crystal, lambda: relax_atoms(crystal.to_ase(), self.calculator, config)
        )
        return _to_relaxation(crystal, outcome, reason, seconds)

    def _single_point_one(self, crystal: Crystal, config: RelaxConfig) -> Relaxation:
        outcome, reason, seconds = self._guarded(
            crystal, lambda: single_point_atoms(crystal.to_ase(), self.calculator, config)
        )
        if outcome is not None and outcome.ok:  # the input structure is the "final" one
            return Relaxation(
                initial_hash=crystal.canonical_hash(),
                final=crystal,
                energy_per_atom=outcome.energy_per_atom,
                status="ok",
                seconds=seconds,
                initial_energy_per_atom=outcome.energy_per_atom,
            )
        return _to_relaxation(crystal, outcome, reason, seconds)


def _to_relaxation(crystal: Crystal, outcome: Outcome | None, reason: str, seconds: float) -> Relaxation:
    initial_hash = crystal.canonical_hash()
    if outcome is None or not outcome.ok:
        return Relaxation(
            initial_hash=initial_hash,
            final=None,
            energy_per_atom=None,
            status="failed",
            reason=reason,
            steps=outcome.steps if outcome else 0,
            fmax=outcome.fmax if outcome else None,
            seconds=seconds,
            initial_energy_per_atom=outcome.initial_energy_per_atom if outcome else None,
            initial_fmax=outcome.initial_fmax if outcome else None,
        )
    try:
        final = Crystal.from_ase(outcome.atoms)
    except CrystaloopError as exc:
        return Relaxation(initial_hash, None, None, "failed", f"relaxed structure is invalid: {exc}", outcome.steps)
    return Relaxation(
        initial_hash=initial_hash,
        final=final,
        energy_per_atom=outcome.energy_per_atom,
        status="unconverged" if outcome.capped else "ok",
        reason=reason,
        steps=outcome.steps,
        fmax=outcome.fmax,
        seconds=seconds,
        initial_energy_per_atom=outcome.initial_energy_per_atom,
        initial_fmax=outcome.initial_fmax,
        converged=outcome.converged,
    )


_DETAIL_FIELDS = ("steps", "fmax", "seconds", "initial_energy_per_atom", "initial_fmax", "converged")


def _to_cached(result: Relaxation, crystal: Crystal) -> CachedResult:
    return CachedResult(
        status=result.status,
        reason=result.reason,
        value=result.energy_per_atom,
        units=ENERGY_UNITS,
        composition=crystal.composition,
        crystal=result.final,
        details={name: getattr(result, name) for name in _DETAIL_FIELDS},
    )


def _from_cached(structure_hash: str, cached: CachedResult) -> Relaxation:
    details = dict(cached.details)
    return Relaxation(
        initial_hash=structure_hash,
        final=cached.crystal,
        energy_per_atom=cached.value if cached.status != "failed" else None,
        status=cached.status,
        reason=cached.reason,
        steps=int(details.get("steps", 0)),
        fmax=details.get("fmax"),
        seconds=float(details.get("seconds", 0.0)),
        initial_energy_per_atom=details.get("initial_energy_per_atom"),
        initial_fmax=details.get("initial_fmax"),
        converged=bool(details.get("converged", False)),
        cached=True,
    )


def _blas_limit(threads: int | None) -> AbstractContextManager[object]:
    """Limit numpy/scipy BLAS threads for the duration (a no-op without threadpoolctl)."""
    if threads is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads, user_api="blas")


class SharedModel(Generic[ModelT]):
    """A model loaded once, on first use, and shared by the per-thread calculators of an oracle.

    Sharing is for models whose forward pass only reads the module (no caches or buffers
    written, no training-mode switches beyond an idempotent ``eval()``): CHGNet and SevenNet
    compute forces and stress with ``torch.autograd.grad`` on each call's own input tensors,
    which concurrent threads may do on one module. The per-thread ASE calculator wrapping it
    keeps that thread's atoms and results apart.
    """

    def __init__(self, load: Callable[[], ModelT]) -> None:
        self._load = load
        self._model: ModelT | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the model has been loaded yet."""
        return self._model is not None

    def get(self) -> ModelT:
        """The model, loading it on the first call (once, whichever thread calls first)."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model


class TorchOracle(ASEOracle):
    """An :class:`ASEOracle` whose calculator runs torch: limits torch's CPU threads while it computes.

    Subclasses set ``self.threads`` (``None`` leaves torch's setting) before calling
    ``ASEOracle.__init__``.
    """

    threads: int | None = 1

    def _compute_scope(self) -> contextlib.AbstractContextManager[object]:
        stack = contextlib.ExitStack()
        stack.enter_context(super()._compute_scope())
        stack.enter_context(torch_threads(self.threads))
        return stack
