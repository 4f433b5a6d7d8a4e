"""``hf-audio``: a pretrained Hugging Face audio encoder (wav2vec2, HuBERT, WavLM, AST,
or the encoder half of Whisper)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from crossfuse.encoders.base import Encoder, InputSpec, ModalityOutput, register_encoder
from crossfuse.encoders.hf_common import (
    check_choice,
    check_processor,
    enable_checkpointing,
    layer_blocks,
    load_weights,
    model_dtype,
    need_model,
    present_index,
    resolve_model,
)
from crossfuse.encoders.image import scatter_rows
from crossfuse.encoders.text import masked_mean
from crossfuse.errors import ConfigError

AUDIO_POOLINGS = ("mean",)


def content_mask(frames: torch.Tensor, n_features: int, n_tokens: int) -> torch.Tensor:
    """(P, T) bool: the tokens covering the first ``frames (P,)`` of ``n_features`` frames."""
    valid = torch.ceil(frames.float() * n_tokens / n_features).long().clamp(1, n_tokens)  # (P,)
    return torch.arange(n_tokens, device=frames.device).unsqueeze(0) < valid.unsqueeze(1)


@register_encoder("hf-audio", "audio")
class HFAudioEncoder(Encoder):
    """Pretrained audio encoder; tokens are its last hidden states (audio frames/patches).

    Expects the ``hf-audio`` processor's batch: ``{"input_values" | "input_features":
    (B, ...), "present": (B,)}`` and, for Whisper, ``content_frames (B,)`` so the tokens
    of the 30-s padding are masked out and left out of the mean. Encoder-decoder
    checkpoints (Whisper) keep their encoder only. Only present rows run through the
    model; absent rows come out exactly zero with an all-False token mask.

    Args:
        spec: the input (its processor must be ``hf-audio``).
        model: hub id or local directory (required).
        pooling: "mean" over the real tokens.
        duration: clip length in seconds (used by the processor).
        gradient_checkpointing: recompute activations in backward to save memory.
        dim: accepted and ignored, so configs stay uniform: the output has the model's
            width (``out_dim``) and the fusion projects it.
    """

    pretrained = True

    def __init__(
        self,
        spec: InputSpec,
        *,
        model: str = "",
        pooling: str = "mean",
        duration: float = 1.0,
        gradient_checkpointing: bool = False,
        dim: int | None = None,
    ) -> None:
        super().__init__()
        check_processor(spec, "hf-audio", "hf-audio")
        need_model({"model": model}, "hf-audio")
        check_choice("hf-audio pooling", pooling, AUDIO_POOLINGS)
        from transformers import AutoModel

        path = resolve_model(model)
        net, _ = load_weights(AutoModel, path)
        if getattr(net.config, "is_encoder_decoder", False):
            net = net.get_encoder()  # Whisper: the audio encoder, without the text decoder
        self.key = str(getattr(net, "main_input_name", ""))
        if self.key not in ("input_values", "input_features"):
            raise ConfigError(
                f"model {model!r} is not an audio encoder (its input is {self.key!r}, "
                "not input_values or input_features)"
            )
        self.model = net
        self.pooling = pooling
        config = getattr(net, "config", None)
        width = getattr(config, "hidden_size", None) or getattr(config, "d_model", None)
        if not isinstance(width, int):
            raise ConfigError(f"cannot tell the output width of model {model!r}")
        self.out_dim = width
        if gradient_checkpointing:
            enable_checkpointing(self.model, model)

    @classmethod
    def processor_choice(cls, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The ``hf-audio`` processor of the same model, with the clip ``duration``."""
        return (
            "hf-audio",
            {"model": need_model(options, "hf-audio"), "duration": options.get("duration", 1.0)},
        )

    def blocks(self) -> list[nn.Module]:
        """Feature extractor/stem, then each transformer layer, then the final norm."""
        return layer_blocks(self.model)

    def forward(self, inputs: dict[str, torch.Tensor]) -> ModalityOutput:
        x, present = inputs[self.key], inputs["present"]  # (B, ...), (B,)
        batch = x.shape[0]
        index = present_index(present)  # (P,)
        dtype = model_dtype(self.model)
        if index.numel() == 0:  # nothing to encode: one all-zero, masked token per row
            tokens = x.new_zeros((batch, 1, self.out_dim), dtype=dtype)
            mask = torch.zeros((batch, 1), dtype=torch.bool, device=x.device)
            return ModalityOutput(tokens[:, 0].clone(), present, tokens, mask)
        x_p = x.index_select(0, index).to(dtype)
        hidden = self.model(**{self.key: x_p}).last_hidden_state  # (P, T, D)
        n_tokens = hidden.shape[1]
        if "content_frames" in inputs:
            frames = inputs["content_frames"].index_select(0, index)  # (P,)
            real = content_mask(frames, x.shape[-1], n_tokens)  # (P, T)
        else:
            real = torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
        pooled = masked_mean(hidden, real)  # (P, D)
        hidden = torch.where(real.unsqueeze(-1), hidden, hidden.new_zeros(()))
        tokens = scatter_rows(hidden, index, batch)  # (B, T, D), absent rows zero
        mask = scatter_rows(real, index, batch)  # (B, T), absent rows all False
        return ModalityOutput(scatter_rows(pooled, index, batch), present, tokens, mask)
