"""`SevenNetOracle`: the SevenNet universal potential as a second, independent oracle.

SevenNet-0 (11 Jul 2024, MPtrj-trained; the default) and SevenNet-l3i5 ship inside the
``sevenn`` wheel. The checkpoint is taken from the installed package by path and the oracle
refuses to run when it is missing there, so sevenn's own download fallback is never reached.
The model is loaded on the first calculation, never at import. Energies in eV/atom, on the
same MPtrj (PBE/PBE+U) footing as CHGNet's.
"""

from __future__ import annotations

import logging
import warnings
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from crystaloop.data.errors import OracleError, UnknownComponentError
from crystaloop.surrogates.oracles.base import RelaxConfig, SharedModel, TorchOracle, package_version
from crystaloop.surrogates.oracles.cache import OracleCache

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

__all__ = ["SevenNetOracle", "SevenNetModel", "SEVENNET_CHECKPOINTS", "sevennet_checkpoint", "load_sevennet_calculator", "sevennet_calculator"]

logger = logging.getLogger(__name__)

SevenNetModel = Literal["7net-0", "7net-l3i5"]
SEVENNET_CHECKPOINTS: dict[str, str] = {
    "7net-0": "SevenNet_0__11Jul2024/checkpoint_sevennet_0.pth",
    "7net-l3i5": "SevenNet_l3i5/checkpoint_l3i5.pth",
}
"""Model name → checkpoint path inside the ``sevenn`` package's ``pretrained_potentials``."""


def sevennet_checkpoint(model: str) -> Path:
    """Path of the checkpoint of ``model`` shipped in the installed sevenn wheel.

    Raises:
        UnknownComponentError: ``model`` is not one of :data:`SEVENNET_CHECKPOINTS`.
        OracleError: sevenn is not installed or its wheel lacks the checkpoint.
    """
    if model not in SEVENNET_CHECKPOINTS:
        raise UnknownComponentError("SevenNet model", model, SEVENNET_CHECKPOINTS)
    spec = find_spec("sevenn")
    if spec is None or spec.origin is None:
        raise OracleError("SevenNet needs the 'sevenn' package: pip install sevenn")
    path = Path(spec.origin).parent / "pretrained_potentials" / SEVENNET_CHECKPOINTS[model]
    if not path.is_file():
        raise OracleError(f"the installed sevenn has no {model} checkpoint at {path}; it is never downloaded")
    return path


def load_sevennet_calculator(model: SevenNetModel = "7net-0", device: str = "cpu") -> Calculator:
    """A ``sevenn.calculator.SevenNetCalculator`` on the wheel's ``model`` checkpoint (its own model)."""
    path = sevennet_checkpoint(model)
    from sevenn.calculator import SevenNetCalculator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no tensor-product accelerator" notes on CPU
        return SevenNetCalculator(str(path), device=device)


def sevennet_calculator(loaded: Calculator, device: str = "cpu") -> Calculator:
    """A new ``SevenNetCalculator`` sharing the model of an already ``loaded`` one (cheap)."""
    from sevenn.calculator import SevenNetCalculator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SevenNetCalculator(loaded.model, file_type="model_instance", device=device)


class SevenNetOracle(TorchOracle):
    """SevenNet as an oracle: relaxed energy per atom (eV/atom) of each crystal.

    Args:
        model: a checkpoint shipped with sevenn, ``"7net-0"`` (default) or ``"7net-l3i5"``.
        relax: relaxation settings (defaults of :class:`RelaxConfig` when ``None``).
        cache: where results persist (nothing cached when ``None``).
        device: torch device, ``"cpu"`` unless a GPU is meant.
        threads: torch intra-op threads while this oracle computes (restored after each
            batch); ``None`` leaves torch's setting. The default 1 follows the CHGNet oracle's
            measurement on the 2-core development machine (single points 3–9× faster on 1
            thread than on 2 with other work running); it was not re-measured for SevenNet.

    The name is ``"sevennet-<model>"``; the cache key also covers the sevenn package version.
    The checkpoint is loaded once (:attr:`shared_model`, a first calculator) and its model
    shared by the calculator each computing thread gets.
    """

    def __init__(
        self,
        *,
        model: SevenNetModel = "7net-0",
        relax: RelaxConfig | None = None,
        cache: OracleCache | None = None,
        device: str = "cpu",
        threads: int | None = 1,
    ) -> None:
        if model not in SEVENNET_CHECKPOINTS:
            raise UnknownComponentError("SevenNet model", model, SEVENNET_CHECKPOINTS)
        self.model = model
        self.device = device
        self.threads = threads
        self.shared_model: SharedModel[Calculator] = SharedModel(lambda: load_sevennet_calculator(model, device))
        super().__init__(
            f"sevennet-{model}",
            lambda: sevennet_calculator(self.shared_model.get(), device),
            relax=relax,
            cache=cache,
            settings={"model": model, "package": "sevenn", "version": package_version("sevenn")},
        )
