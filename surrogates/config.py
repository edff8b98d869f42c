"""Configuration of a surrogate property model: architecture, graph, training and ensemble."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from crystaloop.data.graphs import GraphConfig

__all__ = ["SurrogateConfig"]


class SurrogateConfig(BaseModel):
    """Everything that defines a trained surrogate; stored inside its checkpoint.

    Attributes:
        architecture: ``mpnn`` (crystaloop's network) or ``cgcnn`` (the baseline).
        targets: dataset columns to predict, e.g. ``("heat_ref",)``.
        hidden, layers, n_gaussians: network width, interaction blocks, distance basis size.
        angular_degree, angular_channels: highest spherical-harmonic degree (0–3) and number of
            channels of the ``mpnn``'s three-body (bond-angle) features; degree 0 gives the
            distance-only network. Ignored by ``cgcnn``.
        graph: radius-graph settings (cutoff in Å, nearest ``max_neighbors`` kept per atom).
        ensemble_size: independently seeded members (deep ensemble).
        epochs, batch_size, lr, weight_decay, patience: optimisation (AdamW, cosine decay,
            early stopping on the internal validation MAE).
        val_fraction: share of the training data held out for early stopping and recalibration
            when no validation set is given.
        loss: ``beta_nll`` (heteroscedastic Gaussian NLL weighted by σ^(2β), Seitzer et al.,
            ICLR 2022) or ``mse``.
        seed: member ``m`` trains with seed ``seed + m``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    architecture: Literal["mpnn", "cgcnn"] = "mpnn"
    targets: tuple[str, ...]
    hidden: int = Field(64, gt=0)
    layers: int = Field(3, gt=0)
    n_gaussians: int = Field(32, gt=1)
    angular_degree: int = Field(3, ge=0, le=3)
    angular_channels: int = Field(16, gt=0)
    graph: GraphConfig = GraphConfig(cutoff=5.0, max_neighbors=16)
    ensemble_size: int = Field(3, ge=1)
    epochs: int = Field(60, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    patience: int = Field(20, ge=1)
    val_fraction: float = Field(0.1, gt=0, lt=1)
    loss: Literal["beta_nll", "mse"] = "beta_nll"
    beta: float = Field(0.5, ge=0, le=1)
    seed: int = 0
    device: str = "cpu"

    @field_validator("targets")
    @classmethod
    def _some_targets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("targets must name at least one dataset column, e.g. ('heat_ref',)")
        return value

    def model_kwargs(self) -> dict[str, int | float]:
        """Constructor arguments of the network."""
        kwargs: dict[str, int | float] = {
            "n_targets": len(self.targets),
            "hidden": self.hidden,
            "layers": self.layers,
            "n_gaussians": self.n_gaussians,
            "cutoff": self.graph.cutoff,
        }
        if self.architecture == "mpnn":
            kwargs["angular_degree"] = self.angular_degree
            kwargs["angular_channels"] = self.angular_channels
        return kwargs
