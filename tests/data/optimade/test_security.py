"""Hostile requests get clean OPTIMADE errors (never a 500) and never change a row."""

from __future__ import annotations

import random

import pytest
from optimade.models import ErrorResponse
from sqlalchemy import func, insert, select, text

from crystaloop.data.optimade.search import open_readonly_engine
from crystaloop.data.store.schema import Base, CandidateRow

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:optimade.*")

INJECTIONS = [
    "chemical_formula_reduced=\"x'; DROP TABLE candidates; --\"",
    "id=\"1' OR '1'='1\"",
    'id="1\\" OR 1=1 --"',
    "chemical_formula_descriptive CONTAINS \"'); DELETE FROM candidates; --\"",
    'chemical_formula_descriptive CONTAINS "%"',
    'id STARTS WITH "%%"',
    'id ENDS WITH "_"',
    '_crystaloop_status="evaluated\\" OR \\"1\\"=\\"1"',
    'elements HAS ANY "Si\'; UPDATE candidates SET status=\'failed\'; --"',
    '_crystaloop_campaign="c1" AND _crystaloop_campaign="\'; TRUNCATE measurements; --"',
]
BROKEN_FILTERS = [
    "nsites=1; DROP TABLE candidates",
    "nsites=1 -- comment",
    "nsites=1 /* x */",
    "1=1",
    "nsites = 1 OR 1 = 1 UNION SELECT * FROM candidates",
    "(((((nsites=1",
    '"',
    "nsites=0x10",
    "elements HAS",
    "ELEMENTS HAS \"Si\"",
    "nsites==1",
    "nsites = 1e999999",
    "nsites = 99999999999999999999999999",
    "elements LENGTH 99999999999999999999999999",
    "_crystaloop_e_above_hull < -1e308",
    "(" * 300 + "nsites=1" + ")" * 300,
    "NOT " * 400 + "nsites=1",
    "nsites=1\x00",
    "é = 1",
]
BAD_PARAMS = [
    ("sort=nsites;DROP TABLE candidates", 400),
    ("sort=id desc", 400),
    ("sort=-elements", 400),
    ("response_fields=nsites,\"; DROP TABLE candidates", 400),
    ("page_limit=1;DROP TABLE candidates", 400),
    ("page_limit=-1", 400),
    ("page_limit=1.5", 400),
    ("page_limit=abc", 400),
    ("page_limit=1001", 403),
    ("page_limit=10000000000000000000000000000000000", 403),
    ("page_offset=-5", 400),
    ("page_offset=99999999999999999999999", 400),
    ("foo=bar", 400),
    ("_crystaloop_debug=1", 400),
    ("filter=nsites=1&filter=nsites=2", 400),
    ("response_format=xml", 400),
    ("include=candidates", 400),
    ("filter=" + "a" * 5000, 400),
    ("email_address=" + "x" * 10000, 400),
    ("filter=%00", 400),
]


def _counts(url: str) -> dict[str, int]:
    engine = open_readonly_engine(url)
    try:
        with engine.connect() as conn:
            return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one() for t in Base.metadata.sorted_tables}
    finally:
        engine.dispose()


def _status(client, url: str) -> tuple[int, dict]:
    response = client.get(url)
    body = response.json()
    if response.status_code != 200:
        ErrorResponse(**body)
        assert body["errors"][0]["status"] == str(response.status_code)
    return response.status_code, body


def test_injection_and_malformed_requests_leave_the_store_untouched(client, known_store) -> None:
    before = _counts(known_store.url)
    statuses_before = _statuses(known_store.url)
    for flt in INJECTIONS:
        status, body = _status_params(client, {"filter": flt})
        assert status == 200, (flt, body)
        assert body["meta"]["data_returned"] == 0, flt
    for flt in BROKEN_FILTERS:
        status, body = _status_params(client, {"filter": flt})
        assert status in (200, 400), (flt, body)  # a few are valid OPTIMADE ("1=1", huge numbers)
    for query, expected in BAD_PARAMS:
        status, body = _status(client, f"/v1/structures?{query}")
        assert status == expected, (query, body)
    for path in ("/v1/structures/%00", "/v1/structures/x'%20OR%201=1", "/v1/structures/" + "a" * 5000, "/v1/../etc/passwd"):
        assert _status(client, path)[0] == 404
    assert _status(client, "/v1/structures?_mp_anything=1")[0] == 200  # another provider's parameter is ignored
    status, body = _status(client, "/v1/structures?_zzprovider_x=1")
    assert status == 200 and body["meta"]["warnings"][0]["title"] == "UnknownProviderQueryParameter"
    assert _counts(known_store.url) == before
    assert _statuses(known_store.url) == statuses_before


def _status_params(client, params: dict[str, str]) -> tuple[int, dict]:
    response = client.get("/v1/structures", params=params)
    body = response.json()
    if response.status_code != 200:
        ErrorResponse(**body)
    return response.status_code, body


def _statuses(url: str) -> dict[str, str]:
    engine = open_readonly_engine(url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(select(CandidateRow.id, CandidateRow.status)).all())
    finally:
        engine.dispose()


def test_random_garbage_filters_never_give_a_server_error(client) -> None:
    rng = random.Random(8)
    alphabet = 'abcdefghijklmnopqrstuvwxyz_ "=<>!(),.:0123456789\'\\;-%*ANDORNOTHASALLANYONLYLENGTHIS'
    tokens = ["nsites", "elements", "HAS", "ALL", "ANY", "AND", "OR", "NOT", "(", ")", '"Si"', "3", "=", "<", "LENGTH", ",", "IS", "KNOWN", ":"]
    for _ in range(60):
        if rng.random() < 0.5:
            flt = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        else:
            flt = " ".join(rng.choice(tokens) for _ in range(rng.randint(1, 12)))
        status, body = _status_params(client, {"filter": flt})
        assert status in (200, 400, 501), (flt, status, body)


def test_readonly_engine_refuses_writes(known_store) -> None:
    engine = open_readonly_engine(known_store.url)
    try:
        for statement in (
            text("DELETE FROM candidates"),
            text("UPDATE candidates SET status = 'failed'"),
            insert(CandidateRow.__table__).values(id="x"),
            text("DROP TABLE verdicts"),
        ):
            with engine.connect() as conn, pytest.raises(Exception, match="(?i)read.?only|readonly"):
                conn.execute(statement)
                conn.commit()
    finally:
        engine.dispose()
    assert _counts(known_store.url)["candidates"] == 7
