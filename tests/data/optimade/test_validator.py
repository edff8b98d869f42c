"""`crystaloop serve` passes the official OPTIMADE validator and serves pymatgen's OptimadeRester.

Both run against a real ``crystaloop serve`` subprocess on a free loopback port (marked slow:
a few seconds each, mostly the server's start-up).
"""

from __future__ import annotations

import random

import pytest

from crystaloop.data.store import CandidateStore
from crystaloop.data.store.testing import make_candidates

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")]


def _validate(base_url: str):
    from optimade.validator import ImplementationValidator

    random.seed(20261128)  # the validator picks the entry and fields it tests at random
    validator = ImplementationValidator(base_url=base_url, verbosity=-1, respond_json=True, run_optional_tests=True, page_limit=4)
    validator.validate_implementation()
    return validator


def test_official_validator_passes(known_store, serve, capsys) -> None:
    with CandidateStore(known_store.url) as store:  # more than one page of 4, several prototypes
        store.add_many(make_candidates(6, seed=5), compute_spacegroup=False)
    base = serve(known_store.url)
    for url in (base, f"{base}/v1"):
        validator = _validate(url)
        results = validator.results
        failures = "\n".join(f"{m[0]}: {m[1]}" for m in results.failure_messages + results.internal_failure_messages)
        assert validator.valid, f"validator failed against {url}:\n{failures}"
        assert results.failure_count == 0 and results.internal_failure_count == 0
        assert results.success_count >= 35  # every mandatory check ran (39 at optimade 1.5)
        assert results.optional_failure_count == 0, results.optional_failure_messages
    capsys.readouterr()  # the validator prints its JSON summary


def test_pymatgen_optimade_rester_retrieves_structures(known_store, serve) -> None:
    from pymatgen.ext.optimade import OptimadeRester

    base = serve(known_store.url)
    with OptimadeRester(base) as rester:  # an explicit URL: no network, no alias lookup
        found = rester.get_structures(elements=["Sr", "Ti"])
        assert set(found) == {base}
        (structure,) = found[base].values()
        assert structure.composition.reduced_formula == "SrTiO3" and len(structure) == 5
        by_filter = rester.get_structures_with_filter('_crystaloop_status="evaluated" AND nsites=5')[base]
        assert {s.composition.reduced_formula for s in by_filter.values()} == {"SrTiO3", "BaTiO3"}
        snls = rester.get_snls_with_filter("nelements=1", additional_response_fields=["_crystaloop_status"])[base]
        assert {snl.structure.composition.reduced_formula for snl in snls.values()} == {"C", "Si"}
        assert {snl.data["_optimade"]["_crystaloop_status"] for snl in snls.values()} == {"failed", "generated"}
