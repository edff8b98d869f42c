"""`CHGNetOracle`: the CHGNet universal potential (MPtrj-trained) as an oracle.

The pretrained weights ship inside the ``chgnet`` wheel (0.3.0, the default, and 0.2.0), so
nothing is downloaded; they are loaded on the first calculation, never at import. Energies are
CHGNet's MPtrj-compatible (GGA/GGA+U, MP2020-corrected) total energies, in eV/atom.
"""

from __future__ import annotations

import contextlib
import io
import logging
from typing import TYPE_CHECKING, Literal

from crystaloop.surrogates.oracles.base import RelaxConfig, TorchOracle, package_version
from crystaloop.surrogates.oracles.cache import OracleCache

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

__all__ = ["CHGNetOracle", "CHGNetModel", "load_chgnet_calculator"]

logger = logging.getLogger(__name__)

CHGNetModel = Literal["0.3.0", "0.2.0"]


def load_chgnet_calculator(model: CHGNetModel = "0.3.0", device: str = "cpu") -> Calculator:
    """A ``chgnet.model.dynamics.CHGNetCalculator`` with the wheel's ``model`` weights.

    CHGNet prints while loading; that text goes to this module's logger at DEBUG level.
    """
    from chgnet.model import CHGNet
    from chgnet.model.dynamics import CHGNetCalculator

    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        net = CHGNet.load(model_name=model, use_device=device, verbose=False)
        calculator = CHGNetCalculator(model=net, use_device=device, on_isolated_atoms="ignore")
    for line in captured.getvalue().splitlines():
        logger.debug("chgnet: %s", line)
    return calculator


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
        super().__init__(
            f"chgnet-{model}",
            lambda: load_chgnet_calculator(model, device),
            relax=relax,
            cache=cache,
            settings={"model": model, "package": "chgnet", "version": package_version("chgnet")},
        )
