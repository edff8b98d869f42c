"""The OPTIMADE endpoints answer spec-shaped documents: info, links, listing, paging, sorting, fields."""

from __future__ import annotations

import numpy as np
import pytest
from optimade.models import EntryInfoResponse, ErrorResponse, InfoResponse, LinksResponse
from optimade.validator.utils import ValidatorStructureResponseMany, ValidatorStructureResponseOne

from crystaloop.data.store.testing import base_cells

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:optimade.*")


def _get(client, url: str, status: int = 200) -> dict:
    response = client.get(url)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/vnd.api+json")
    return response.json()


def test_info_endpoints_and_versions(client) -> None:
    info = _get(client, "/v1/info")
    InfoResponse(**info)
    attributes = info["data"]["attributes"]
    assert attributes["api_version"] == "1.2.0"
    assert attributes["available_api_versions"][0]["url"].endswith("/v1")
    assert attributes["entry_types_by_format"] == {"json": ["structures"]}
    assert info["meta"]["provider"]["prefix"] == "crystaloop"
    entry = _get(client, "/v1/info/structures")
    EntryInfoResponse(**entry)
    properties = entry["data"]["properties"]
    for name in ("elements", "nsites", "last_modified", "_crystaloop_status", "_crystaloop_e_above_hull", "_crystaloop_predictions",
                 "_crystaloop_e_above_hull_decomposition", "_crystaloop_e_above_hull_coverage"):
        assert name in properties and properties[name]["description"]
    assert properties["_crystaloop_e_above_hull"]["unit"] == "eV/atom"
    assert properties["nsites"]["sortable"] and not properties["elements"]["sortable"]
    LinksResponse(**_get(client, "/v1/links"))
    assert client.get("/versions").text.splitlines() == ["version", "1"]
    assert client.get("/versions").headers["content-type"].startswith("text/csv")
    ErrorResponse(**_get(client, "/v1/info/references", 404))
    ErrorResponse(**_get(client, "/v1/versions", 404))
    error = _get(client, "/v2/info", 553)
    assert error["errors"][0]["title"] == "Version Not Supported"
    for prefix in ("", "/v1.2", "/v1.2.0"):
        assert _get(client, f"{prefix}/structures?page_limit=1")["meta"]["data_returned"] == 7


def test_listing_is_a_valid_structures_response(client, known_store) -> None:
    body = _get(client, "/v1/structures")
    ValidatorStructureResponseMany(**body)
    meta = body["meta"]
    assert meta["data_returned"] == meta["data_available"] == 7 and not meta["more_data_available"]
    assert meta["api_version"] == "1.2.0" and meta["query"]["representation"] == "/structures?"
    assert [d["id"] for d in body["data"]] == sorted(known_store.ids.values())  # default order: id
    assert body["links"]["next"] is None


def test_structure_attributes_describe_the_stored_crystal(client, known_store) -> None:
    cells = base_cells()
    body = _get(client, f"/v1/structures/{known_store.ids['SrTiO3']}")
    ValidatorStructureResponseOne(**body)
    a = body["data"]["attributes"]
    crystal = cells["SrTiO3"]
    assert a["elements"] == ["O", "Sr", "Ti"] and a["nelements"] == 3 and a["nsites"] == 5
    assert a["elements_ratios"] == pytest.approx([0.6, 0.2, 0.2])
    assert a["chemical_formula_reduced"] == "O3SrTi"
    assert a["chemical_formula_anonymous"] == "A3BC"
    assert a["chemical_formula_descriptive"] == "SrTiO3"
    assert a["species_at_sites"] == crystal.symbols
    assert {s["name"] for s in a["species"]} == set(a["elements"])
    np.testing.assert_allclose(a["lattice_vectors"], crystal.lattice)
    np.testing.assert_allclose(a["cartesian_site_positions"], crystal.cart_coords, atol=1e-12)
    assert a["dimension_types"] == [1, 1, 1] and a["nperiodic_dimensions"] == 3 and a["structure_features"] == []
    assert a["space_group_it_number"] == 221 and a["immutable_id"] == body["data"]["id"]
    assert a["last_modified"].endswith("Z")
    # provider fields: loop state, records with uncertainty, guards
    assert a["_crystaloop_status"] == "evaluated" and a["_crystaloop_campaign"] == "c1" and a["_crystaloop_iteration"] == 0
    assert a["_crystaloop_e_above_hull"] == 0.01
    assert a["_crystaloop_e_above_hull_decomposition"] == "0.4 SrO + 0.6 TiO2"  # from the 0.01 (chgnet) value
    assert a["_crystaloop_e_above_hull_coverage"] == "prototype"
    details = next(m for m in a["_crystaloop_measurements"] if m["oracle"] == "chgnet")["details"]
    assert details["basis"]["prototype"] == 12 and details["decomposition"][1]["source"] == "prototype:rutile"
    assert {(m["oracle"], m["value"]) for m in a["_crystaloop_measurements"]} == {("chgnet", 0.01), ("sevennet", 0.2)}
    assert a["_crystaloop_predictions"] == [{"model": "m1", "property": "band_gap", "mean": 1.5, "std": 0.2, "units": "eV"}]
    assert a["_crystaloop_verdicts"][0]["guard"] == "smact" and a["_crystaloop_passed_guards"] == ["smact"]
    assert a["_crystaloop_failed_guards"] == [] and a["_crystaloop_provenance"]["component"] == "optimade-tests"
    assert a["_crystaloop_volume"] == pytest.approx(crystal.volume)
    failed = _get(client, f"/v1/structures/{known_store.ids['C']}")["data"]["attributes"]
    assert failed["_crystaloop_e_above_hull"] is None and failed["_crystaloop_measurements"][0]["status"] == "failed"
    assert failed["_crystaloop_e_above_hull_decomposition"] is None and failed["_crystaloop_e_above_hull_coverage"] is None
    assert failed["_crystaloop_measurements"][0]["details"] == {}
    fields = "response_fields=_crystaloop_e_above_hull_decomposition,_crystaloop_e_above_hull_coverage"
    plain = _get(client, f"/v1/structures/{known_store.ids['BaTiO3']}?{fields}")["data"]["attributes"]
    assert plain == {"_crystaloop_e_above_hull_decomposition": None, "_crystaloop_e_above_hull_coverage": None}
    ErrorResponse(**_get(client, "/v1/structures/0000", 404))


def test_pagination_follows_next_links(client, known_store) -> None:
    seen: list[str] = []
    url = "/v1/structures?page_limit=3&response_fields=nsites"
    pages = 0
    while url:
        body = _get(client, url)
        assert len(body["data"]) <= 3 and body["meta"]["data_returned"] == 7
        seen += [d["id"] for d in body["data"]]
        url = body["links"]["next"]
        assert body["meta"]["more_data_available"] == bool(url)
        pages += 1
    assert pages == 3 and seen == sorted(known_store.ids.values())
    assert _get(client, "/v1/structures?page_offset=100")["data"] == []
    empty = _get(client, "/v1/structures?page_limit=0")
    assert empty["data"] == [] and empty["meta"]["data_returned"] == 7


def test_sorting(client, known_store) -> None:
    body = _get(client, "/v1/structures?sort=-nsites,chemical_formula_reduced&response_fields=nsites,chemical_formula_reduced")
    keys = [(-d["attributes"]["nsites"], d["attributes"]["chemical_formula_reduced"]) for d in body["data"]]
    assert keys == sorted(keys)
    body = _get(client, "/v1/structures?sort=_crystaloop_e_above_hull&response_fields=_crystaloop_e_above_hull")
    values = [d["attributes"]["_crystaloop_e_above_hull"] for d in body["data"]]
    assert values[:2] == [0.01, 0.08] and values[2:] == [None] * 5  # unknown values last
    body = _get(client, "/v1/structures?sort=-_crystaloop_e_above_hull&response_fields=_crystaloop_e_above_hull")
    assert [d["attributes"]["_crystaloop_e_above_hull"] for d in body["data"]][:2] == [0.08, 0.01]
    body = _get(client, "/v1/structures?sort=-id&response_fields=nsites")
    assert [d["id"] for d in body["data"]] == sorted(known_store.ids.values(), reverse=True)
    ErrorResponse(**_get(client, "/v1/structures?sort=elements", 400))
    ErrorResponse(**_get(client, "/v1/structures?sort=nope", 400))


def test_response_fields(client) -> None:
    body = _get(client, "/v1/structures?response_fields=nsites,_crystaloop_status,chemical_formula_hill,_mp_x,id")
    for document in body["data"]:
        assert set(document["attributes"]) == {"nsites", "_crystaloop_status", "chemical_formula_hill", "_mp_x"}
        assert document["attributes"]["chemical_formula_hill"] is None and document["attributes"]["_mp_x"] is None
        assert set(document) >= {"id", "type"} and document["type"] == "structures"
    body = _get(client, "/v1/structures?filter=_crystaloop_predicted_band_gap>2&response_fields=_crystaloop_predicted_band_gap,_crystaloop_predicted_std_band_gap")
    assert [d["attributes"] for d in body["data"]] == [{"_crystaloop_predicted_band_gap": 3.0, "_crystaloop_predicted_std_band_gap": 0.5}]
    ErrorResponse(**_get(client, "/v1/structures?response_fields=nsites,bogus", 400))


def test_filter_through_the_api_with_warnings(client, known_store) -> None:
    body = _get(client, '/v1/structures?filter=chemical_formula_reduced="SrTiO3"')
    assert [d["id"] for d in body["data"]] == [known_store.ids["SrTiO3"]]
    assert body["meta"]["warnings"][0]["type"] == "warning" and "O3SrTi" in body["meta"]["warnings"][0]["detail"]
    body = _get(client, '/v1/structures?filter=_crystaloop_e_above_hull<0.05 AND _crystaloop_status="evaluated"')
    assert body["meta"]["data_returned"] == 1
    body = _get(client, "/v1/structures?filter=nsites<6&page_limit=1")
    assert body["meta"]["data_returned"] == 5 and body["meta"]["more_data_available"]
    assert "page_offset=1" in body["links"]["next"] and "filter=nsites" in body["links"]["next"]
    not_implemented = _get(client, "/v1/structures?filter=a.b=1", 501)
    ErrorResponse(**not_implemented)
    assert not_implemented["errors"][0]["source"] == {"parameter": "filter"}
