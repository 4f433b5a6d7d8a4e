"""``hf-vision``: a pretrained Hugging Face vision backbone (ViT, DeiT, DINOv2, Swin,
ConvNeXt, ResNet, ... and the vision tower of CLIP or SigLIP)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from crossfuse.encoders.base import Encoder, InputSpec, ModalityOutput, register_encoder
from crossfuse.encoders.hf_common import (
    check_choice,
    check_processor,
    drop_pooler,
    enable_checkpointing,
    layer_blocks,
    load_config,
    load_weights,
    model_dtype,
    need_model,
    present_index,
    resolve_model,
)
from crossfuse.encoders.image import scatter_rows
from crossfuse.errors import ConfigError

VISION_POOLINGS = ("cls", "mean", "pooler")
# Dual-encoder checkpoints whose vision tower is loaded on its own.
_VISION_TOWERS = {"clip": "CLIPVisionModel", "siglip": "SiglipVisionModel"}


def as_tokens(hidden: torch.Tensor) -> torch.Tensor:
    """Last hidden state as tokens: (B, T, D) as is; a (B, C, H, W) feature map → (B, H*W, C)."""
    return hidden.flatten(2).transpose(1, 2) if hidden.dim() == 4 else hidden


def _model_class(config: Any, model: str) -> Any:
    """``AutoModel``, or the vision-tower class of a CLIP/SigLIP checkpoint."""
    import transformers

    tower = _VISION_TOWERS.get(getattr(config, "model_type", ""))
    if tower is not None:
        return getattr(transformers, tower)
    if hasattr(config, "vision_config"):
        raise ConfigError(
            f"{model!r} is a {config.model_type} multi-modal model; hf-vision can take the "
            f"vision tower of {', '.join(sorted(_VISION_TOWERS))} checkpoints only"
        )
    return transformers.AutoModel


@register_encoder("hf-vision", "image")
class HFVisionEncoder(Encoder):
    """Pretrained vision backbone; tokens are its last hidden states (patches or map cells).

    Expects ``{"pixel_values": (B, C, H, W), "present": (B,)}`` from the ``hf-image``
    processor. Only present rows run through the model; absent rows come out exactly
    zero with an all-False token mask. One blank image is run at construction to learn
    the token count, the width and whether the model has a (trained) pooler.

    Args:
        spec: the input (its processor must be ``hf-image``; its shape is the probe's).
        model: hub id or local directory (required).
        pooling: "pooler" (the model's own pooled output), "cls" (first token) or "mean"
            (over all tokens). Default: "pooler" when the model has one whose weights
            were in the checkpoint, else "mean".
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
        pooling: str | None = None,
        gradient_checkpointing: bool = False,
        dim: int | None = None,
    ) -> None:
        super().__init__()
        check_processor(spec, "hf-vision", "hf-image")
        need_model({"model": model}, "hf-vision")
        if pooling is not None:
            check_choice("hf-vision pooling", pooling, VISION_POOLINGS)
        path = resolve_model(model)
        config = load_config(path)
        self.model, missing = load_weights(_model_class(config, model), path)
        if len(spec.shape) == 3:
            shape = tuple(spec.shape)
        else:
            side = getattr(config, "image_size", 224)
            shape = (getattr(config, "num_channels", 3), side, side)
        tokens, pooled, conv = self._probe(shape)
        self.out_dim = int(tokens.shape[-1])
        self.n_tokens = int(tokens.shape[1])
        trained_pooler = not any("pooler" in k.split(".") for k in missing)
        has_pooler = pooled is not None and pooled.shape[-1] == self.out_dim
        if pooling is None:
            pooling = "pooler" if has_pooler and trained_pooler else "mean"
        if pooling == "pooler" and not has_pooler:
            raise ConfigError(f"model {model!r} has no pooled output of width {self.out_dim}")
        if pooling == "cls" and conv:
            raise ConfigError(
                f"model {model!r} outputs a feature map without a class token; "
                "use pooling mean or pooler"
            )
        self.pooling = pooling
        if pooling != "pooler":
            drop_pooler(self.model)
        if gradient_checkpointing:
            enable_checkpointing(self.model, model)

    def _probe(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
        """Run one blank image → (tokens (1, T, D), pooled (1, D) or None, is a conv map)."""
        training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                out = self.model(pixel_values=torch.zeros((1, *shape)))
        except (RuntimeError, ValueError) as err:
            raise ConfigError(
                f"hf-vision model cannot encode images of shape {shape}: {err}"
            ) from None
        finally:
            self.model.train(training)
        hidden = out.last_hidden_state
        pooled = getattr(out, "pooler_output", None)
        pooled = pooled.flatten(1) if pooled is not None else None  # (1, D); ResNet: (1, C, 1, 1)
        return as_tokens(hidden), pooled, hidden.dim() == 4

    @classmethod
    def processor_choice(cls, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The ``hf-image`` processor of the same model."""
        return ("hf-image", {"model": need_model(options, "hf-vision")})

    def blocks(self) -> list[nn.Module]:
        """Embeddings/stem, then each layer or stage, then final norm/pooler."""
        return layer_blocks(self.model)

    def forward(self, inputs: dict[str, torch.Tensor]) -> ModalityOutput:
        pixels, present = inputs["pixel_values"], inputs["present"]  # (B, C, H, W), (B,)
        batch = pixels.shape[0]
        mask = present.unsqueeze(1).repeat(1, self.n_tokens)  # (B, T)
        index = present_index(present)  # (P,)
        dtype = model_dtype(self.model)
        if index.numel() == 0:
            tokens = pixels.new_zeros((batch, self.n_tokens, self.out_dim), dtype=dtype)
            pooled = pixels.new_zeros((batch, self.out_dim), dtype=dtype)
            return ModalityOutput(pooled, present, tokens, mask)
        out = self.model(pixel_values=pixels.index_select(0, index).to(dtype))
        hidden = as_tokens(out.last_hidden_state)  # (P, T, D)
        if self.pooling == "pooler":
            pooled = out.pooler_output.flatten(1)  # (P, D)
        elif self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            pooled = hidden.mean(1)
        tokens = scatter_rows(hidden, index, batch)  # (B, T, D), absent rows zero
        return ModalityOutput(scatter_rows(pooled, index, batch), present, tokens, mask)
