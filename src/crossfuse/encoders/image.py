"""``image-cnn``: a small VGG-style CNN trained from scratch, for 16×16 up to 224×224 inputs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from crossfuse.encoders.base import Encoder, InputSpec, ModalityOutput, register_encoder
from crossfuse.encoders.text import check_positive
from crossfuse.errors import ConfigError


def conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    """3×3 convolution (same padding, no bias: BatchNorm has one) → BatchNorm → ReLU."""
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


def run_present(
    net: nn.Module, x: torch.Tensor, present: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Run ``net`` on the present rows of ``x`` only; ``None`` when no row is present.

    Absent rows hold zero filler, which would skew BatchNorm's batch statistics in
    training, so they never enter the network.
    """
    index = present.nonzero().squeeze(1)  # (P,)
    if index.numel() == 0:
        return None
    return net(x.index_select(0, index)), index


def scatter_rows(rows: torch.Tensor, index: torch.Tensor, batch: int) -> torch.Tensor:
    """Place ``rows (P, ...)`` at ``index`` of a zero tensor ``(batch, ...)``."""
    out = rows.new_zeros((batch, *rows.shape[1:]))
    return out.index_copy(0, index, rows)


@register_encoder("image-cnn", "image")
class ImageCNNEncoder(Encoder):
    """Blocks of conv-BN-ReLU-conv-BN-ReLU-maxpool2 → global average pool → Linear to ``dim``.

    Expects ``{"pixels": (B, C, H, W), "present": (B,)}``. A block halves the feature map
    only while it is at least 2 pixels on both sides, so tiny images still work. Tokens
    are the final feature-map positions (adaptively averaged down to at most
    ``token_grid × token_grid``) projected to ``dim``.
    """

    def __init__(
        self,
        spec: InputSpec,
        *,
        dim: int = 128,
        widths: Sequence[int] = (32, 64, 128),
        token_grid: int = 8,
    ) -> None:
        super().__init__()
        if len(spec.shape) != 3:
            raise ConfigError(
                f"image input {spec.name!r} needs shape (C, H, W), got {tuple(spec.shape)}"
            )
        widths = tuple(widths)
        if not widths:
            raise ConfigError("image-cnn widths must list at least one block width")
        check_positive(dim=dim, token_grid=token_grid)
        check_positive(**{f"widths[{i}]": w for i, w in enumerate(widths)})
        channels, height, width = spec.shape
        self.out_dim = dim
        layers: list[nn.Module] = []
        for w in widths:
            layers += conv_bn_relu(channels, w) + conv_bn_relu(w, w)
            if min(height, width) >= 2:
                layers.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            channels = w
        self.features = nn.Sequential(*layers)
        self.grid = nn.AdaptiveAvgPool2d((min(height, token_grid), min(width, token_grid)))
        self.proj = nn.Linear(channels, dim)
        self.token_proj = nn.Linear(channels, dim)

    def forward(self, inputs: dict[str, torch.Tensor]) -> ModalityOutput:
        pixels, present = inputs["pixels"], inputs["present"]  # (B, C, H, W), (B,)
        batch = pixels.shape[0]
        ran = run_present(self.features, pixels, present)
        if ran is None:  # nothing to encode: all-zero outputs, everything masked
            n_tokens = self.grid.output_size[0] * self.grid.output_size[1]
            tokens = pixels.new_zeros((batch, n_tokens, self.out_dim))
            mask = torch.zeros((batch, n_tokens), dtype=torch.bool, device=pixels.device)
            pooled = pixels.new_zeros((batch, self.out_dim))
            return ModalityOutput(pooled=pooled, present=present, tokens=tokens, token_mask=mask)
        fmap, index = ran  # (P, C', h, w)
        pooled = self.proj(fmap.mean(dim=(2, 3)))  # (P, D)
        grid = self.grid(fmap).flatten(2).transpose(1, 2)  # (P, h'*w', C')
        tokens = self.token_proj(grid)  # (P, T, D)
        pooled = scatter_rows(pooled, index, batch)  # (B, D), absent rows exactly zero
        tokens = scatter_rows(tokens, index, batch)  # (B, T, D)
        mask = present.unsqueeze(1).repeat(1, tokens.shape[1])  # (B, T)
        return ModalityOutput(pooled=pooled, present=present, tokens=tokens, token_mask=mask)
