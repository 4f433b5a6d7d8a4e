"""``hf-text``: a pretrained Hugging Face text transformer (default: bundled all-MiniLM-L6-v2)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from crossfuse.encoders.base import Encoder, InputSpec, ModalityOutput, register_encoder
from crossfuse.encoders.hf_common import (
    DEFAULT_TEXT_MODEL,
    check_choice,
    check_processor,
    drop_pooler,
    enable_checkpointing,
    layer_blocks,
    load_config,
    load_weights,
    present_index,
    resolve_model,
)
from crossfuse.encoders.image import scatter_rows
from crossfuse.encoders.text import check_positive, masked_mean
from crossfuse.errors import ConfigError

TEXT_POOLINGS = ("mean", "cls")


@register_encoder("hf-text", "text")
class HFTextEncoder(Encoder):
    """``AutoModel`` text transformer; tokens are its last hidden states (native width).

    Expects ``{"input_ids": (B, T), "attention_mask": (B, T), "present": (B,)}`` from the
    ``hf-text`` processor. Only present rows run through the model; absent rows come out
    exactly zero with an all-False token mask. With ``pooling="mean"`` and
    ``normalize=True`` the pooled vector equals sentence-transformers' embedding.

    Args:
        spec: the input (its processor must be ``hf-text``).
        model: hub id or local directory; "default" is the bundled all-MiniLM-L6-v2.
        pooling: "mean" over real tokens, or "cls" (the first token).
        max_length: tokens per cell (used by the processor; checked against the model).
        normalize: L2-normalise the pooled vector.
        gradient_checkpointing: recompute activations in backward to save memory.
        dim: accepted and ignored, so configs stay uniform: the output has the model's
            width (``out_dim``) and the fusion projects it.
    """

    pretrained = True

    def __init__(
        self,
        spec: InputSpec,
        *,
        model: str = DEFAULT_TEXT_MODEL,
        pooling: str = "mean",
        max_length: int = 128,
        normalize: bool = False,
        gradient_checkpointing: bool = False,
        dim: int | None = None,
    ) -> None:
        super().__init__()
        check_processor(spec, "hf-text", "hf-text")
        check_choice("hf-text pooling", pooling, TEXT_POOLINGS)
        check_positive(max_length=max_length)
        from transformers import AutoModel

        path = resolve_model(model, allow_default=True)
        config = load_config(path)
        limit = getattr(config, "max_position_embeddings", None)
        if isinstance(limit, int) and max_length > limit:
            raise ConfigError(f"hf-text max_length {max_length} exceeds the model's limit {limit}")
        self.model, _ = load_weights(AutoModel, path)
        drop_pooler(self.model)  # mean/cls pooling never uses it
        if gradient_checkpointing:
            enable_checkpointing(self.model, model)
        self.pooling = pooling
        self.normalize = bool(normalize)
        self.out_dim = int(self.model.config.hidden_size)

    @classmethod
    def processor_choice(cls, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The ``hf-text`` processor with this model's tokenizer and ``max_length``."""
        return (
            "hf-text",
            {
                "model": options.get("model", DEFAULT_TEXT_MODEL),
                "max_length": options.get("max_length", 128),
            },
        )

    def blocks(self) -> list[nn.Module]:
        """Embeddings, then each transformer layer (then a final norm, if the model has one)."""
        return layer_blocks(self.model)

    def forward(self, inputs: dict[str, torch.Tensor]) -> ModalityOutput:
        ids, attn, present = inputs["input_ids"], inputs["attention_mask"], inputs["present"]
        batch, width = ids.shape  # (B, T)
        mask = attn.bool() & present.unsqueeze(1)  # (B, T)
        index = present_index(present)  # (P,)
        if index.numel() == 0:
            weight = next(self.model.parameters())
            tokens = weight.new_zeros((batch, width, self.out_dim))
            return ModalityOutput(weight.new_zeros((batch, self.out_dim)), present, tokens, mask)
        ids_p, attn_p = ids.index_select(0, index), attn.index_select(0, index)  # (P, T)
        hidden = self.model(input_ids=ids_p, attention_mask=attn_p).last_hidden_state  # (P, T, D)
        real = attn_p.bool()  # (P, T)
        pooled = masked_mean(hidden, real) if self.pooling == "mean" else hidden[:, 0]  # (P, D)
        if self.normalize:
            pooled = F.normalize(pooled, dim=-1)
        hidden = torch.where(real.unsqueeze(-1), hidden, hidden.new_zeros(()))  # padding → 0
        tokens = scatter_rows(hidden, index, batch)  # (B, T, D), absent rows zero
        return ModalityOutput(scatter_rows(pooled, index, batch), present, tokens, mask)
