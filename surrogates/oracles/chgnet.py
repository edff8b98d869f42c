"""`CHGNetOracle`: the CHGNet universal potential (MPtrj-trained) as an oracle.

The pretrained weights ship inside the ``chgnet`` wheel (0.3.0, the default, and 0.2.0), so
nothing is downloaded; they are loaded on the first calculation, never at import. Energies are
CHGNet's MPtrj-compatible (GGA/GGA+U, MP2020-corrected) total energies, in eV/atom.
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, TypeVar

from crystaloop.surrogates.oracles.base import RelaxConfig, SharedModel, TorchOracle, package_version
from crystaloop.surrogates.oracles.cache import OracleCache

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator
    from chgnet.model import CHGNet

T = TypeVar("T")

__all__ = ["CHGNetOracle", "CHGNetModel", "load_chgnet_model", "chgnet_calculator", "load_chgnet_calculator"]

logger = logging.getLogger(__name__)

CHGNetModel = Literal["0.3.0", "0.2.0"]


_STDOUT_LOCK = threading.Lock()  # redirect_stdout swaps the process-wide sys.stdout


def _quietly(make: Callable[[], T]) -> T:
    """``make()`` with CHGNet's prints sent to this module's logger at DEBUG level."""
    captured = io.StringIO()
    with _STDOUT_LOCK, contextlib.redirect_stdout(captured):
        made = make()
    for line in captured.getvalue().splitlines():
        logger.debug("chgnet: %s", line)
    return made


def load_chgnet_model(model: CHGNetModel = "0.3.0", device: str = "cpu") -> CHGNet:
    """The wheel's pretrained ``chgnet.model.CHGNet`` with ``model`` weights (~0.8 GB resident on CPU at most)."""
    from chgnet.model import CHGNet

    return _quietly(lambda: CHGNet.load(model_name=model, use_device=device, verbose=False))


def chgnet_calculator(net: CHGNet, device: str = "cpu") -> Calculator:
    """A ``CHGNetCalculator`` around an already loaded ``net`` (cheap: the model is shared, not copied)."""
    from chgnet.model.dynamics import CHGNetCalculator

    return _quietly(lambda: CHGNetCalculator(model=net, use_device=device, on_isolated_atoms="ignore"))


def load_chgnet_calculator(model: CHGNetModel = "0.3.0", device: str = "cpu") -> Calculator:
    """A ``chgnet.model.dynamics.CHGNetCalculator`` with the wheel's ``model`` weights, its own model."""
    return chgnet_calculator(load_chgnet_model(model, device), device)


class CHGNetOracle(TorchOracle):
    """CHGNet as an oracle: relaxed energy per atom (eV/atom) of each crystal.

    Args:
        model: pretrained weights shipped with chgnet, ``"0.3.0"`` (default) or ``"0.2.0"``.
        relax: relaxation settings (defaults of :class:`RelaxConfig` when ``None``).
        cache: where results persist (nothing cached when ``None``).
        device: torch device, ``"cpu"`` unless a GPU is meant.
        threads: torch intra-op threads while this oracle computes (restored after each
            batch); ``None`` leaves torch's setting. The default 1 suits cells of up to a few
            tens of atoms on CPU: on the 2-core development machine, with other work running,
            CHGNet single points ran 3–9× faster on 1 thread than on torch's default 2.

    The name is ``"chgnet-<model>"``; the cache key also covers the chgnet package version.
    The model is loaded once (:attr:`shared_model`) and shared by the calculator each
    computing thread gets, so parallel callers cost no extra model memory.
    """

    def __init__(
        self,
        *,
        model: CHGNetModel = "0.3.0",
        relax: RelaxConfig | None = None,
        cache: OracleCache | None = None,
        device: str = "cpu",
        threads: int | None = 1,
    ) -> None:
        if model not in ("0.3.0", "0.2.0"):
            from crystaloop.data.errors import UnknownComponentError

            raise UnknownComponentError("CHGNet model", model, ("0.3.0", "0.2.0"))
        self.model = model
        self.device = device
        self.threads = threads
        self.shared_model: SharedModel[CHGNet] = SharedModel(lambda: load_chgnet_model(model, device))
        super().__init__(
            f"chgnet-{model}",
            lambda: chgnet_calculator(self.shared_model.get(), device),
            relax=relax,
            cache=cache,
            settings={"model": model, "package": "chgnet", "version": package_version("chgnet")},
        )
