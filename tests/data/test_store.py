"""CandidateStore behaviour on SQLite and PostgreSQL: round trip, idempotence, status, records, filters."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from crystaloop.data.crystal import Crystal
from crystaloop.data.errors import QueryError, StatusTransitionError, StoreError
from crystaloop.data.records import (
    Candidate,
    CandidateStatus,
    Condition,
    Measurement,
    Prediction,
    Provenance,
    Verdict,
)
from crystaloop.data.store import ENV_VAR, CandidateFilter, CandidateStore, resolve_store_url
from crystaloop.data.store.schema import CandidateElementRow, StatusHistoryRow
from crystaloop.data.store.testing import base_cells, make_candidates, perturbed_crystals

S = CandidateStatus


def _full_candidate() -> Candidate:
    crystal = Crystal(
        np.array([[3.91, 0.02, -0.01], [0.015, 3.89, 0.0], [0.0, -0.03, 3.95]]),
        np.array([[0.01, 0.0, 0.999], [0.5, 0.49, 0.51], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5]])
        + 1e-13,  # digits beyond the 3-decimal hash must survive too
        [38, 22, 8, 8, 8],
    )
    return Candidate(
        crystal=crystal,
        provenance=Provenance(
            component="diffusion",
            version="1.2",
            checkpoint_hash="abc",
            config_hash="cfg",
            seed=7,
            campaign="camp",
            iteration=3,
        ),
        condition=Condition(
            composition={"Sr": 1, "Ti": 1, "O": 3},
            chemical_system=("Sr", "Ti", "O"),
            properties={"band_gap": 1.5},
            embedding=(0.1, -0.2, 1 / 3),
            guidance_scale=2.0,
            num_atoms=5,
        ),
        status=S.SCORED,
        # Deliberately not in key order: records come back in the order they were given.
        verdicts=(Verdict(guard="smact", ok=False), Verdict(guard="distance", ok=True, reason="min 1.9 Å", score=1.9)),
        predictions={"e_form": (-1.25, 0.05, "eV/atom"), "band_gap": (1.1, 0.3, "eV")},
        measurements=(
            Measurement(oracle="chgnet", property="e_hull", value=None, status="failed", reason="SCF did not converge"),
            Measurement(oracle="chgnet", property="e_form", value=-1.3, units="eV/atom"),
        ),
    )


def test_round_trip_equal(store: CandidateStore) -> None:
    candidate = _full_candidate()
    assert store.add(candidate) is True
    back = store.get(candidate.id)
    assert back == candidate
    np.testing.assert_array_equal(back.crystal.lattice, candidate.crystal.lattice)
    np.testing.assert_array_equal(back.crystal.frac_coords, candidate.crystal.frac_coords)
    np.testing.assert_array_equal(back.crystal.numbers, candidate.crystal.numbers)
    assert back.provenance == candidate.provenance
    assert back.condition == candidate.condition
    assert back.status is S.SCORED
    assert back.verdicts == candidate.verdicts
    assert back.predictions == candidate.predictions
    assert back.measurements == candidate.measurements
    fresh = Crystal(np.array(back.crystal.lattice), np.array(back.crystal.frac_coords), np.array(back.crystal.numbers))
    assert fresh.canonical_hash() == candidate.id  # the id really is the hash of what was read back


HULL_DETAILS = {
    "basis": {"elements": 4, "prototype": 31, "known": 0, "campaign": 2},
    "coverage": "prototype",
    "decomposition": [{"formula": "CaO", "fraction": 0.5, "source": "prototype:rocksalt"}],
    "hull_energy_per_atom": -5.1,
}


def test_measurement_details_and_unconverged_round_trip(store: CandidateStore) -> None:
    measurements = (
        Measurement(oracle="chgnet", property="e_above_hull", value=0.03, units="eV/atom", details=HULL_DETAILS),
        Measurement(
            oracle="chgnet", property="energy_per_atom", value=-4.2, units="eV/atom", status="unconverged",
            reason="stopped at max_steps=2 with fmax 0.8 eV/Å > 0.05", details={"steps": 2},
        ),
        Measurement(oracle="chgnet", property="formation_energy", value=None, status="unconverged", reason="no energy"),
    )
    candidate = Candidate(crystal=base_cells()["C"], provenance=Provenance(component="t"), measurements=measurements)
    store.add(candidate)
    assert store.get(candidate.id).measurements == measurements
    other = make_candidates(1, seed=31)[0]
    store.add(other)
    store.record(other.id, measurements=[measurements[1]])
    (back,) = store.get(other.id).measurements
    assert back == measurements[1] and back.status == "unconverged" and back.details == {"steps": 2}


def test_round_trip_minimal_and_query(store: CandidateStore) -> None:
    candidate = Candidate(crystal=base_cells()["C"], provenance=Provenance(component="import"))
    store.add(candidate)
    (back,) = store.query()
    assert back == candidate and back.condition is None and back.predictions == {} and back.verdicts == ()


def test_add_is_idempotent(store: CandidateStore) -> None:
    candidate = make_candidates(1, seed=1)[0]
    assert store.add(candidate) is True
    assert store.add(candidate) is False
    assert store.add(Candidate(crystal=candidate.crystal, provenance=Provenance(component="other"))) is False
    assert store.count() == 1
    assert len(store.status_history(candidate.id)) == 1
    assert candidate.id in store and candidate in store and "0" * 64 not in store and 42 not in store


def test_add_existing_leaves_it_untouched(store: CandidateStore) -> None:
    candidate = make_candidates(1, seed=2)[0]
    store.add(candidate)
    changed = Candidate(
        crystal=candidate.crystal,
        provenance=Provenance(component="other"),
        status=S.REJECTED,
        verdicts=(Verdict(guard="g", ok=False),),
    )
    assert store.add_many([changed]).added == 0
    assert store.get(candidate.id) == candidate


def test_add_many_duplicates_within_and_across_batches(store: CandidateStore) -> None:
    c = make_candidates(6, seed=3)
    batch = [c[0], c[1], c[0], c[2], c[1], c[3]]
    report = store.add_many(batch, chunk_size=2)  # repeats inside a chunk and across chunks
    assert (report.added, report.existing) == (4, 2)
    assert report.ids == [x.id for x in batch]
    report = store.add_many([c[3], c[4], c[5], c[4]], chunk_size=3)
    assert (report.added, report.existing) == (2, 2)
    assert store.count() == 6
    assert {x.id for x in store.query(CandidateFilter(limit=100))} == {x.id for x in c}
    for x in c:
        (initial,) = store.status_history(x.id)
        assert initial.from_status is None and initial.to_status is S.GENERATED
    assert store.add_many([]).added == 0


def test_add_many_failure_keeps_committed_chunks_and_no_partial_candidate(store: CandidateStore) -> None:
    good = make_candidates(4, seed=4)
    broken = Candidate(crystal=base_cells()["Si"], provenance=Provenance(component="x"), predictions={"e": (1.0,)})
    with pytest.raises(StoreError, match="must be \\(mean, std, units\\)"):
        store.add_many([good[0], good[1], good[2], broken, good[3]], chunk_size=2)
    assert store.count() == 2  # first chunk committed; the second (good[2] + broken) rolled back whole
    assert good[2].id not in store and broken.id not in store
    with store._engine.connect() as conn:  # no orphan element or history rows of the failed chunk
        elements = set(conn.execute(select(CandidateElementRow.candidate_id)).scalars())
        history = conn.execute(select(func.count()).select_from(StatusHistoryRow)).scalar_one()
    assert elements == {good[0].id, good[1].id}
    assert history == 2
    with pytest.raises(StoreError, match="Candidate records"):
        store.add_many([good[3], "not a candidate"])  # type: ignore[list-item]
    with pytest.raises(StoreError, match="chunk_size"):
        store.add_many(good, chunk_size=0)


def test_status_transitions(store: CandidateStore) -> None:
    a, b = make_candidates(2, seed=5)
    store.add_many([a, b])
    store.update_status(a.id, S.SCORED, "predicted")
    store.update_status(a.id, "selected")
    store.update_status(a.id, "selected")  # no-op, not logged
    store.update_status(a.id, S.EVALUATED, note="oracle ok")
    assert store.get(a.id).status is S.EVALUATED
    history = store.status_history(a.id)
    assert [(h.from_status, h.to_status) for h in history] == [
        (None, S.GENERATED),
        (S.GENERATED, S.SCORED),
        (S.SCORED, S.SELECTED),
        (S.SELECTED, S.EVALUATED),
    ]
    assert [h.note for h in history][1:] == ["predicted", "", "oracle ok"]
    assert all(h.at.tzinfo is not None for h in history)
    assert [h.at for h in history] == sorted(h.at for h in history)

    with pytest.raises(StatusTransitionError, match="'generated' to 'evaluated'"):
        store.update_status(b.id, S.EVALUATED)
    with pytest.raises(StatusTransitionError, match="'evaluated' to 'scored'.*final"):
        store.update_status(a.id, S.SCORED)
    with pytest.raises(StatusTransitionError, match="unknown status 'done'.*generated"):
        store.update_status(b.id, "done")
    with pytest.raises(StoreError, match="no candidate with id 'nope'"):
        store.update_status("nope", S.SCORED)
    assert store.get(b.id).status is S.GENERATED  # refused changes leave the row as it was
    assert len(store.status_history(b.id)) == 1
    assert len(store.status_history(a.id)) == 4


def test_record_upserts(store: CandidateStore) -> None:
    candidate = make_candidates(1, seed=6)[0]
    store.add(candidate)
    store.record(candidate.id, predictions={"e_form": (-1.0, 0.1, "eV/atom")}, model="cgcnn")
    store.record(candidate.id, predictions={"e_form": (-2.0, 0.2, "eV/atom")}, model="cgcnn")
    store.record(
        candidate.id,
        measurements=[Measurement(oracle="chgnet", property="e_form", value=-1.5, units="eV/atom")],
        verdicts=[Verdict(guard="distance", ok=False, reason="too close", score=0.3)],
    )
    store.record(
        candidate.id,
        measurements=[Measurement(oracle="chgnet", property="e_form", value=-1.7, units="eV/atom")],
        verdicts=[Verdict(guard="distance", ok=True, reason="fine", score=float("nan"))],
    )
    back = store.get(candidate.id)
    assert back.predictions == {"e_form": (-2.0, 0.2, "eV/atom")}
    assert back.measurements == (Measurement(oracle="chgnet", property="e_form", value=-1.7, units="eV/atom"),)
    assert back.verdicts == (Verdict(guard="distance", ok=True, reason="fine", score=None),)  # NaN score -> None

    one = Prediction(
        mean=[[0.5, float("nan")]], std=[[0.1, 0.2]], properties=("gap", "e_hull"), units=("eV", "eV/atom"), model="gp"
    )
    store.record(candidate.id, predictions=one)
    predictions = store.get(candidate.id).predictions
    assert predictions["gap"] == (0.5, 0.1, "eV") and math.isnan(predictions["e_hull"][0])
    with pytest.raises(StoreError, match="one-row Prediction"):
        store.record(
            candidate.id,
            predictions=Prediction(mean=np.zeros((2, 1)), std=np.zeros((2, 1)), properties=("a",), units=("eV",)),
        )
    with pytest.raises(StoreError, match="no candidate with id 'missing'"):
        store.record("missing", verdicts=[Verdict(guard="g", ok=True)])
    with pytest.raises(StoreError, match="Measurement records"):
        store.record(candidate.id, measurements=[{"oracle": "x"}])  # type: ignore[list-item]


def test_record_predictions_batch(store: CandidateStore) -> None:
    cands = make_candidates(3, seed=7)
    store.add_many(cands)
    pred = Prediction(
        mean=[[1.0], [2.0], [3.0]], std=[[0.1], [0.2], [0.3]], properties=("e",), units=("eV",), model="m"
    )
    store.record_predictions([c.id for c in cands], pred)
    assert [store.get(c.id).predictions["e"][0] for c in cands] == [1.0, 2.0, 3.0]
    with pytest.raises(StoreError, match="missing"):
        store.record_predictions([cands[0].id, cands[1].id, "x" * 64], pred)
    assert store.get(cands[0].id).predictions["e"][0] == 1.0
    with pytest.raises(StoreError, match="2 candidate ids"):
        store.record_predictions([c.id for c in cands[:2]], pred)


# ---------------------------------------------------------------------------- filters


def _tio2_like() -> Crystal:
    lattice = np.diag([4.59, 4.59, 2.96])
    frac = [[0, 0, 0], [0.5, 0.5, 0.5], [0.3, 0.3, 0], [0.7, 0.7, 0], [0.8, 0.2, 0.5], [0.2, 0.8, 0.5]]
    return Crystal.from_symbols(lattice, frac, ["Ti", "Ti", "O", "O", "O", "O"])


@pytest.fixture
def filled(store: CandidateStore) -> tuple[CandidateStore, dict[str, list[Candidate]]]:
    """NaCl, MgO, SrTiO3, BaTiO3, diamond C and a TiO2-like cell, 3 variants each, plus statuses."""
    rng = np.random.default_rng(11)
    cells = {
        **{k: v for k, v in base_cells().items() if k in {"NaCl", "MgO", "SrTiO3", "BaTiO3", "C"}},
        "TiO2": _tio2_like(),
    }
    groups: dict[str, list[Candidate]] = {}
    for name, cell in cells.items():
        crystals = [cell, *perturbed_crystals(cell, 2, rng)]
        campaign = "perov" if name in {"SrTiO3", "BaTiO3"} else None
        groups[name] = [
            Candidate(
                crystal=c, provenance=Provenance(component="t", campaign=campaign, iteration=i if campaign else None)
            )
            for i, c in enumerate(crystals)
        ]
    store.add_many([c for group in groups.values() for c in group], chunk_size=5)
    for c in groups["SrTiO3"][:2]:
        store.update_status(c.id, S.SCORED)
    store.update_status(groups["NaCl"][0].id, S.REJECTED)
    return store, groups


def _ids(candidates) -> set[str]:
    return {c.id for c in candidates}


def test_filter_elements_has_all_and_only(filled) -> None:
    store, g = filled
    assert _ids(store.query(CandidateFilter(elements=["Sr", "O"]))) == _ids(g["SrTiO3"])
    assert _ids(store.query(CandidateFilter(elements=["Ti", "O"]))) == _ids(g["SrTiO3"] + g["BaTiO3"] + g["TiO2"])
    assert _ids(store.query(CandidateFilter(elements="Sr-Ti-O"))) == _ids(g["SrTiO3"])
    system = store.query(CandidateFilter(elements=["Sr", "Ti", "O"], elements_only=True))
    assert _ids(system) == _ids(g["SrTiO3"] + g["TiO2"])  # the chemical system includes subsystems
    exact = CandidateFilter(elements=["Sr", "Ti", "O"], elements_only=True, nelements=3)
    assert _ids(store.query(exact)) == _ids(g["SrTiO3"])
    assert _ids(store.query(CandidateFilter(elements=["O", "Mg"], elements_only=True))) == _ids(g["MgO"])
    assert _ids(store.query(CandidateFilter(elements=["C", "Na", "Cl"], elements_only=True))) == _ids(
        g["C"] + g["NaCl"]
    )
    assert store.query(CandidateFilter(elements=["Na", "O"])) == []
    assert store.count(CandidateFilter(elements=["O"])) == 12


def test_filter_status_nsites_formula_campaign(filled) -> None:
    store, g = filled
    scored = store.query(CandidateFilter(status=[S.SCORED]))
    assert _ids(scored) == _ids(g["SrTiO3"][:2])
    assert store.count(CandidateFilter(status=["generated", "rejected"])) == 18 - 2
    assert store.count(CandidateFilter(status="rejected")) == 1
    assert _ids(store.query(CandidateFilter(min_nsites=5, max_nsites=5))) == _ids(g["SrTiO3"] + g["BaTiO3"])
    assert _ids(store.query(CandidateFilter(max_nsites=2))) == _ids(g["C"])
    assert _ids(store.query(CandidateFilter(min_nsites=6))) == _ids(g["NaCl"] + g["MgO"] + g["TiO2"])
    assert _ids(store.query(CandidateFilter(reduced_formula="TiSrO3"))) == _ids(g["SrTiO3"])
    assert _ids(store.query(CandidateFilter(campaign="perov"))) == _ids(g["SrTiO3"] + g["BaTiO3"])
    assert _ids(store.query(CandidateFilter(campaign="perov", iteration=0))) == {g["SrTiO3"][0].id, g["BaTiO3"][0].id}
    assert _ids(store.query(CandidateFilter(nelements=1))) == _ids(g["C"])
    both = CandidateFilter(elements=["Ti"], status=["generated"], min_nsites=5, max_nsites=5)
    assert _ids(store.query(both)) == _ids(g["SrTiO3"][2:] + g["BaTiO3"])


def test_filter_limit_offset_order(filled) -> None:
    store, _ = filled
    store.analyze()  # planner statistics must not change results
    everything = store.query(CandidateFilter(order_by="id", limit=1000))
    assert [c.id for c in everything] == sorted(c.id for c in everything) and len(everything) == 18
    pages = [store.query(CandidateFilter(order_by="id", limit=5, offset=o)) for o in range(0, 20, 5)]
    assert [len(p) for p in pages] == [5, 5, 5, 3]
    assert [c.id for p in pages for c in p] == [c.id for c in everything]
    by_sites = store.query(CandidateFilter(order_by="nsites", limit=1000))
    assert [c.crystal.n_sites for c in by_sites] == sorted(c.crystal.n_sites for c in by_sites)
    by_formula = store.query(CandidateFilter(order_by="reduced_formula", limit=4))
    assert [c.crystal.reduced_formula for c in by_formula] == ["BaTiO3"] * 3 + ["C"]
    assert len(store.query()) == 18 and len(store.query(CandidateFilter(limit=7))) == 7
    assert store.count(CandidateFilter(limit=1)) == 18  # count ignores limit and offset
    assert store.query({"elements": ["Mg"], "limit": 2}) and len(store.query({"elements": ["Mg"], "limit": 2})) == 2


def test_summary_and_campaign_history(filled) -> None:
    store, g = filled
    summary = store.summary()
    assert summary["total"] == 18
    assert summary["by_status"] == {"generated": 15, "rejected": 1, "scored": 2}
    assert summary["by_nelements"] == {1: 3, 2: 9, 3: 6}
    assert len(summary["top_formulas"]) == 6 and {n for _, n in summary["top_formulas"]} == {3}
    assert summary["top_formulas"][0] == ("BaTiO3", 3)  # ties broken by formula
    assert summary["campaigns"] == 1 and summary["backend"] in {"sqlite", "postgresql"}
    history = store.history("perov")
    assert len(history) == 6 + 2
    assert [h.to_status for h in history[-2:]] == [S.SCORED, S.SCORED]
    assert {h.candidate_id for h in history} == _ids(g["SrTiO3"] + g["BaTiO3"])
    with pytest.raises(StoreError, match="no campaign 'nope'; known: perov"):
        store.history("nope")


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"elements": ["Sr", "Xx"]}, "Xx"),
        ({"elements": []}, "at least one element"),
        ({"status": ["bogus"]}, "generated"),
        ({"status": []}, "at least one status"),
        ({"order_by": "volume"}, "reduced_formula"),
        ({"limit": 0}, "greater than or equal to 1"),
        ({"limit": 100_001}, "100000"),
        ({"offset": -1}, "greater than or equal to 0"),
        ({"min_nsites": 5, "max_nsites": 2}, "min_nsites 5 is larger than max_nsites 2"),
        ({"elements_only": True}, "elements_only=True needs elements"),
        ({"reduced_formula": "Qq2"}, "Qq2"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_filter_is_refused(kwargs, needle) -> None:
    with pytest.raises(ValidationError, match=needle):
        CandidateFilter(**kwargs)


def test_bad_filter_type_and_dict(store: CandidateStore) -> None:
    with pytest.raises(QueryError, match="CandidateFilter"):
        store.query("status = 'generated'")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="colour"):
        store.count({"colour": "red"})
    hostile = CandidateFilter(reduced_formula="NaCl", campaign="x'; DROP TABLE candidates; --")
    assert store.query(hostile) == [] and store.count() == 0  # values are bound, never spliced


def test_file_that_is_not_a_database(tmp_path) -> None:
    path = tmp_path / "not.db"
    path.write_bytes(b"this is not a sqlite database, just text" * 100)
    with pytest.raises(StoreError, match="cannot open store"):
        CandidateStore(f"sqlite:///{path}")


# ---------------------------------------------------------------------------- campaigns and iterations


def test_campaigns_and_iterations(store: CandidateStore) -> None:
    store.ensure_campaign("c1", name="first", config_json='{"k": 1}', config_hash="h1")
    store.ensure_campaign("c1")  # idempotent
    store.ensure_campaign("c1", config_hash="h1")
    with pytest.raises(StoreError, match="config hash 'h1', got 'h2'"):
        store.ensure_campaign("c1", config_hash="h2")
    with pytest.raises(StoreError, match="config_json must be JSON"):
        store.ensure_campaign("c2", config_json="{nope")
    store.start_iteration("c1", 0)
    store.start_iteration("c1", 0)  # resumed: still one row
    store.finish_iteration("c1", 0, '{"hits": 2}')
    store.start_iteration("c1", 1)
    with pytest.raises(StoreError, match="already finished"):
        store.start_iteration("c1", 0)
    with pytest.raises(StoreError, match="never started"):
        store.finish_iteration("c1", 5, "{}")
    with pytest.raises(StoreError, match="non-negative"):
        store.start_iteration("c1", -1)
    iterations = store.iterations("c1")
    assert [(i.index, i.report_json) for i in iterations] == [(0, '{"hits": 2}'), (1, None)]
    assert iterations[0].finished_at >= iterations[0].started_at and iterations[1].finished_at is None
    store.start_iteration("implicit", 0)  # creates the campaign
    assert store.campaigns() == ["c1", "implicit"]
    assert store.history("c1") == []
    with pytest.raises(StoreError, match="no campaign 'c9'"):
        store.iterations("c9")


def test_closed_store_refuses(store_url: str) -> None:
    store = CandidateStore(store_url)
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.count()
    with CandidateStore(store_url) as again:
        assert again.count() == 0


def test_get_missing_raises(store: CandidateStore) -> None:
    with pytest.raises(StoreError, match="no candidate with id 'abc'"):
        store.get("abc")
    with pytest.raises(StoreError, match="no candidate with id 'abc'"):
        store.status_history("abc")


# ---------------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    "bad", ["not a url", "mysql://user@host/db", "sqlite+aiosqlite:///x.db", "postgresql+asyncpg://h/d"]
)
def test_bad_url_is_refused(bad: str) -> None:
    with pytest.raises(StoreError) as info:
        resolve_store_url(bad)
    message = str(info.value)
    assert bad.split("://")[0] in message and "sqlite:///relative/path.db" in message and "postgresql://" in message
    with pytest.raises(StoreError, match="accepted"):
        CandidateStore(bad)


def test_url_resolution_order(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_store_url() == "sqlite:///crystaloop.db"
    monkeypatch.setenv(ENV_VAR, "postgresql://u:secret@db.example:5433/cl")
    assert resolve_store_url() == "postgresql+psycopg://u:secret@db.example:5433/cl"
    assert resolve_store_url("sqlite:///other.db") == "sqlite:///other.db"
    assert resolve_store_url("") == "postgresql+psycopg://u:secret@db.example:5433/cl"
    assert resolve_store_url("sqlite:///~/x.db") == f"sqlite:///{Path.home() / 'x.db'}"
    assert resolve_store_url("postgres://h/d") == "postgresql+psycopg://h/d"
    assert resolve_store_url("postgresql+psycopg://h/d?options=-csearch_path%3Dx") == (
        "postgresql+psycopg://h/d?options=-csearch_path%3Dx"
    )
    target = tmp_path / "nested" / "dir" / "env.db"
    monkeypatch.setenv(ENV_VAR, f"sqlite:///{target}")
    with CandidateStore() as store:
        assert store.url == f"sqlite:///{target}"
        store.add(make_candidates(1, seed=8)[0])
    assert target.exists()
    with pytest.raises(StoreError, match="must be a string"):
        resolve_store_url(5)  # type: ignore[arg-type]


def test_unreachable_postgres_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="cannot open store"):
        CandidateStore("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")


def test_password_not_in_repr() -> None:
    from crystaloop.data.store import redact_url

    assert "secret" not in redact_url("postgresql+psycopg://u:secret@h/d")


def test_generated_test_crystals_are_distinct_and_seeded() -> None:
    a = make_candidates(14, seed=99)
    b = make_candidates(14, seed=99)
    assert len({c.id for c in a}) == 14
    assert [c.id for c in a] == [c.id for c in b]
    assert {c.crystal.reduced_formula for c in a} == {"NaCl", "MgO", "SrTiO3", "BaTiO3", "SrZrO3", "C", "Si"}


def test_planner_statistics_refresh_as_the_store_grows(store: CandidateStore, monkeypatch: pytest.MonkeyPatch) -> None:
    import crystaloop.data.store.store as store_module

    monkeypatch.setattr(store_module, "ANALYZE_AFTER", 3)
    cands = make_candidates(4, seed=12)
    store.add_many(cands[:2])  # small calls add up
    assert store._rows_at_analyze == 0
    store.add_many(cands[2:])
    assert store._rows_at_analyze == 4 and store._added_since_analyze == 0
    assert len(store.query(CandidateFilter(elements=["Na"]))) == 1
