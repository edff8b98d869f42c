"""Query routes (direct vs latent prior) around a latent-reading generator, and the campaign's query config."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from crystaloop.data.crystal import Crystal
from crystaloop.data.errors import CrystaloopError
from crystaloop.data.records import Candidate, Condition, Provenance
from crystaloop.loop.config import CampaignConfig
from crystaloop.loop.query import QueryConfig, QueryGenerator, QueryRoute
from crystaloop.multimodal.prior import LatentPrior, PriorConfig
from crystaloop.multimodal.prompt import parse_prompt

WIDTH = 4


def _crystal(symbols: tuple[str, str]) -> Crystal:
    from crystaloop.data.crystal import atomic_number

    return Crystal(4.0 * np.eye(3), np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]]),
                   np.array([atomic_number(s) for s in symbols]))


class LatentReader:
    """A fake latent-reading generator: records the embeddings it was given; odd samples lack Ti."""

    name = "fake"
    embedding_dim = WIDTH
    properties: list[str] = []

    def __init__(self) -> None:
        self.calls: list[np.ndarray | None] = []

    def sample(self, n: int, condition: Condition | None = None, *, seed: int, embeddings: np.ndarray | None = None) -> list[Candidate]:
        self.calls.append(None if embeddings is None else np.array(embeddings))
        provenance = Provenance(component="generator.fake", version="1", seed=seed)
        out = []
        for i in range(n):
            row = condition.embedding if embeddings is None else tuple(float(v) for v in embeddings[i])
            crystal = _crystal(("Sr", "O") if (seed + i) % 2 else ("Ti", "O"))
            out.append(Candidate(crystal=crystal, provenance=provenance, condition=condition.model_copy(update={"embedding": row})))
        return out


def _route(route: str, constraints=None) -> QueryRoute:  # noqa: ANN001
    latent = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)
    torch.manual_seed(0)  # the same untrained prior every time
    prior = LatentPrior(PriorConfig(latent_dim=WIDTH, hidden=8, blocks=1, time_features=4)) if route == "prior" else None
    return QueryRoute(latent, "text", route, prior=prior, prior_steps=2, constraints=constraints)


def test_direct_route_conditions_every_sample_on_the_query_latent() -> None:
    base = LatentReader()
    candidates = QueryGenerator(base, _route("direct")).sample(4, Condition(composition={"Ti": 1, "O": 1}), seed=0)
    assert base.calls == [None]
    assert {c.condition.embedding for c in candidates} == {(1.0, 0.0, 0.0, 0.0)}
    assert all(c.condition.composition == {"Ti": 1, "O": 1} for c in candidates)


def test_prior_route_draws_one_unit_latent_per_sample_seeded() -> None:
    base = LatentReader()
    generator = QueryGenerator(base, _route("prior"))
    first = generator.sample(5, None, seed=3)
    rows = np.array([c.condition.embedding for c in first])
    assert rows.shape == (5, WIDTH) and len({tuple(r) for r in rows}) == 5
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    again = QueryGenerator(LatentReader(), _route("prior")).sample(5, None, seed=3)
    np.testing.assert_array_equal(rows, np.array([c.condition.embedding for c in again]))


@pytest.mark.parametrize("route", ["direct", "prior"])
def test_prompt_constraints_hold_on_both_routes(route: str) -> None:
    constraints = parse_prompt("a titanium oxide")
    generator = QueryGenerator(LatentReader(), _route(route, constraints))
    kept = generator.sample(6, None, seed=0)
    assert len(kept) == 6 and all("Ti" in c.crystal.composition for c in kept)
    assert generator.last_drawn > 6  # half the fake's samples lack Ti: more were drawn


def test_a_generator_without_a_latent_is_refused() -> None:
    class Plain(LatentReader):
        embedding_dim = 0

    with pytest.raises(CrystaloopError, match="reads no latent"):
        QueryGenerator(Plain(), _route("direct"))


def _campaign(**extra) -> CampaignConfig:  # noqa: ANN003
    return CampaignConfig.model_validate({"name": "t", "objectives": [{"property": "dir_gap", "goal": "maximise"}], **extra})


def test_campaign_query_config_validation() -> None:
    config = _campaign(generator={"kind": "diffusion", "checkpoint": "perov_5_multimodal"},
                       query={"text": "cubic SrTiO3", "route": "prior", "prior_guidance": 2.0})
    assert config.query is not None and config.query.route == "prior"
    assert config.config_hash() != _campaign(generator={"kind": "diffusion", "checkpoint": "perov_5_multimodal"}).config_hash()
    assert QueryConfig(xrd="measured.xy").route == "direct"
    with pytest.raises(ValidationError, match="exactly one of text and xrd"):
        QueryConfig(text="SrTiO3", xrd="measured.xy")
    with pytest.raises(ValidationError, match="exactly one of text and xrd"):
        QueryConfig()
    with pytest.raises(ValidationError, match="route"):
        QueryConfig(text="SrTiO3", route="sideways")
    with pytest.raises(ValidationError, match="route 'prior' only"):
        QueryConfig(text="SrTiO3", prior="p.pt")
    with pytest.raises(ValidationError, match="extra"):
        QueryConfig(text="SrTiO3", guidance=2.0)
    with pytest.raises(ValidationError, match="allowed with query: 'diffusion'"):
        _campaign(generator={"kind": "random_search"}, query={"text": "SrTiO3"})
