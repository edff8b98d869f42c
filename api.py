"""The Python API: a few calls from a formula to relaxed, scored structures, pymatgen in and out.

Everything here is a thin layer over the packages (the same code the CLI runs), re-exported from
``crystaloop`` itself and loaded on first use (``import crystaloop`` stays light)::

    import crystaloop

    structures = crystaloop.generate("SrTiO3", n=8)          # list[pymatgen Structure], screened
    prediction = crystaloop.predict(structures, "heat_ref")  # mean ± std per structure
    relaxed = crystaloop.relax(structures, oracle="chgnet")  # dicts: structure, energy_per_atom, status
    hull = crystaloop.e_above_hull(structures)               # Measurements with value and basis
    with crystaloop.open_store("sqlite:///runs/store.db") as store: ...

Structures may be pymatgen ``Structure``s, ASE ``Atoms``, crystaloop ``Crystal``s, or a path to
any file the CLI reads (CIF, POSCAR, extxyz, JSON, CDVAE CSV, a folder).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["as_crystals", "generate", "predict", "relax", "e_above_hull", "open_store"]


def as_crystals(structures: Any) -> list:  # -> list[Crystal]
    """Crystals from pymatgen Structures, ASE Atoms, Crystals (one or a sequence), or a file path.

    Raises:
        InvalidStructureError: an item of another type, or a structure crystaloop cannot hold.
    """
    from crystaloop.data.crystal import Crystal
    from crystaloop.data.errors import InvalidStructureError

    if isinstance(structures, str | Path):
        from crystaloop.data.datasets import load_dataset

        return list(load_dataset(structures).crystals)
    items = [structures] if not isinstance(structures, Iterable) or _is_single(structures) else list(structures)
    crystals = []
    for item in items:
        if isinstance(item, Crystal):
            crystals.append(item)
        elif type(item).__name__ in ("Structure", "IStructure"):
            crystals.append(Crystal.from_pymatgen(item))
        elif type(item).__name__ == "Atoms":
            crystals.append(Crystal.from_ase(item))
        else:
            raise InvalidStructureError(
                f"cannot use a {type(item).__name__} as a structure; allowed: pymatgen Structure, ase.Atoms, "
                "crystaloop Crystal, or a path to a structure file"
            )
    return crystals


def _is_single(item: Any) -> bool:
    return type(item).__name__ in ("Structure", "IStructure", "Atoms")


def generate(
    formula: str,
    n: int = 8,
    *,
    model: str | None = None,
    steps: int | None = None,
    method: str | None = None,
    targets: Mapping[str, float] | None = None,
    guidance: float = 1.0,
    seed: int = 0,
    keep_invalid: bool = False,
) -> list:  # -> list[pymatgen Structure]
    """Sample ``n`` structures for a formula (``"SrTiO3"``: structure prediction) or a chemical
    system (``"Ba-Ti-O"``: de novo), as ``crystaloop generate`` does: the shipped distilled model
    unless ``model``/``steps``/``method`` ask otherwise, implausible samples dropped (or kept with
    ``keep_invalid``). Each Structure's ``properties["crystaloop"]`` holds id, provenance and status.
    """
    from crystaloop.commands.common import parse_composition
    from crystaloop.commands.files import candidate_info
    from crystaloop.commands.generator import _default_model, _load_generator, screen_generated
    from crystaloop.data.records import Condition

    system = tuple(s.strip() for s in formula.split("-")) if "-" in formula else None
    composition = None if system else parse_composition(formula, option="formula")
    condition = Condition(composition=composition, chemical_system=system, properties=dict(targets or {}), guidance_scale=guidance)
    name = model or _default_model(composition, system, steps=steps, method=method)
    candidates = _load_generator(name, steps, method).sample(n, condition, seed=seed)
    plausible, implausible = screen_generated(candidates)
    structures = []
    for candidate in plausible + (implausible if keep_invalid else []):
        structure = candidate.crystal.to_pymatgen()
        structure.properties["crystaloop"] = {"id": candidate.id, **candidate_info(candidate)}
        structures.append(structure)
    return structures


def predict(structures: Any, target: str | None = "heat_ref", *, model: str | None = None):  # -> Prediction
    """Surrogate predictions with uncertainty: a :class:`~crystaloop.data.records.Prediction`
    (``mean``/``std`` arrays n × m, ``properties``, ``units``) from the shipped model for ``target``
    or from ``model`` (a checkpoint path or shipped name)."""
    from crystaloop.surrogates.ensemble import PropertyEnsemble
    from crystaloop.surrogates.shipped import default_surrogate_for, shipped_surrogate_path

    if model is not None:
        path = Path(model) if Path(model).exists() else shipped_surrogate_path(model)
    else:
        path = shipped_surrogate_path(default_surrogate_for(target or "heat_ref"))
    return PropertyEnsemble.load(path).predict(as_crystals(structures))


def relax(structures: Any, *, oracle: str = "chgnet", fmax: float = 0.1, steps: int = 200) -> list[dict[str, Any]]:
    """Relax each structure with an MLIP (``chgnet``, ``sevennet``, ``emt``): per structure a dict
    with the relaxed ``structure`` (pymatgen, ``None`` when it failed), ``energy_per_atom``
    (eV/atom), ``status`` (ok, unconverged, failed), ``reason``, ``steps`` and ``fmax``."""
    from crystaloop.surrogates.oracles import RelaxConfig, make_oracle

    results = make_oracle(oracle, relax=RelaxConfig(fmax=fmax, max_steps=steps)).relax(as_crystals(structures))
    return [{"structure": None if r.final is None else r.final.to_pymatgen(), "energy_per_atom": r.energy_per_atom,
             "status": r.status, "reason": r.reason, "steps": r.steps, "fmax": r.fmax} for r in results]


def e_above_hull(structures: Any, *, oracle: str = "chgnet", fmax: float = 0.1, steps: int = 200) -> list:  # -> list[Measurement]
    """Energy above the hull (eV/atom) of each structure, as ``crystaloop hull eval`` computes it:
    Measurements with ``value``, ``status`` and ``details`` (decomposition, coverage class)."""
    from crystaloop.surrogates.hull import EnergyAboveHull
    from crystaloop.surrogates.oracles import OracleCache, RelaxConfig, make_oracle

    hull = EnergyAboveHull(make_oracle(oracle, relax=RelaxConfig(fmax=fmax, max_steps=steps), cache=OracleCache()))
    return hull.e_above_hull(as_crystals(structures))


def open_store(url: str | None = None, *, must_exist: bool = False):  # -> CandidateStore
    """The candidate store at ``url`` (default ``$CRYSTALOOP_DB_URL`` or ``sqlite:///crystaloop.db``);
    ``must_exist`` refuses a SQLite file that does not exist instead of creating it."""
    from crystaloop.data.store import CandidateStore, existing_store_url

    return CandidateStore(existing_store_url(url) if must_exist else url)

