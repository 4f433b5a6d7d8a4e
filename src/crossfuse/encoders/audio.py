"""``audio-cnn-gru``: a CRNN over log-mel spectrograms (CNN front end, bidirectional GRU)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from crossfuse.encoders.base import Encoder, InputSpec, ModalityOutput, register_encoder
from crossfuse.encoders.image import conv_bn_relu, run_present, scatter_rows
from crossfuse.encoders.text import check_positive, make_pooling
from crossfuse.errors import ConfigError


def halvings(size: int, blocks: int) -> tuple[list[int], int]:
    """Per-block pool factor along one axis (2 while the axis is ≥ 2, else 1) and final size.

    Sizes round up, as ``MaxPool2d(ceil_mode=True)`` does.
    """
    factors = []
    for _ in range(blocks):
        factors.append(2 if size >= 2 else 1)
        size = -(-size // factors[-1])
    return factors, size


@register_encoder("audio-cnn-gru", "audio")
class AudioCNNGRUEncoder(Encoder):
    """Mel spectrogram as a 1-channel image → conv-BN-ReLU-maxpool blocks → GRU over time.

    Expects ``{"mel": (B, n_mels, frames), "present": (B,)}``. Each block halves both
    frequency and time (an axis already down to 1 is left alone); the channels × remaining
    mel bands at each time step feed a bidirectional GRU whose outputs, projected to
    ``dim``, are the tokens (one per reduced time step) and are mean-pooled.
    """

    def __init__(
        self,
        spec: InputSpec,
        *,
        dim: int = 128,
        channels: Sequence[int] = (16, 32),
        hidden: int = 64,
        layers: int = 1,
        pooling: str = "mean",
    ) -> None:
        super().__init__()
        if len(spec.shape) != 2:
            raise ConfigError(
                f"audio input {spec.name!r} needs shape (n_mels, frames), got {tuple(spec.shape)}"
            )
        channels = tuple(channels)
        if not channels:
            raise ConfigError("audio-cnn-gru channels must list at least one block width")
        check_positive(dim=dim, hidden=hidden, layers=layers)
        check_positive(**{f"channels[{i}]": c for i, c in enumerate(channels)})
        self.out_dim = dim
        self.n_mels = spec.shape[0]
        freq_factors, mels_left = halvings(self.n_mels, len(channels))
        blocks: list[nn.Module] = []
        c_in = 1
        for c_out, f in zip(channels, freq_factors, strict=True):
            # Time is pooled by 2 too; ceil_mode keeps an odd or 1-frame axis from vanishing.
            blocks += [*conv_bn_relu(c_in, c_out), nn.MaxPool2d((f, 2), ceil_mode=True)]
            c_in = c_out
        self.cnn = nn.Sequential(*blocks)
        self.gru = nn.GRU(
            c_in * mels_left, hidden, num_layers=layers, batch_first=True, bidirectional=True
        )
        self.proj = nn.Linear(2 * hidden, dim)
        self.pool = make_pooling(pooling, dim)
        self.n_blocks = len(channels)

    def _encode(self, mel: torch.Tensor) -> torch.Tensor:
        """``mel (P, M, T)`` of present rows → tokens ``(P, T', dim)``."""
        fmap = self.cnn(mel.unsqueeze(1))  # (P, C, M', T')
        seq = fmap.flatten(1, 2).transpose(1, 2)  # (P, T', C*M')
        out, _ = self.gru(seq)  # (P, T', 2H)
        return self.proj(out)  # (P, T', D)

    def forward(self, inputs: dict[str, torch.Tensor]) -> ModalityOutput:
        mel, present = inputs["mel"], inputs["present"]  # (B, M, T), (B,)
        if mel.shape[1] != self.n_mels:
            raise ConfigError(
                f"audio-cnn-gru built for {self.n_mels} mel bands, got {mel.shape[1]}"
            )
        batch = mel.shape[0]
        ran = run_present(self._encode, mel, present)
        if ran is None:  # nothing to encode: all-zero outputs, everything masked
            tokens = mel.new_zeros((batch, halvings(mel.shape[2], self.n_blocks)[1], self.out_dim))
        else:
            tokens = scatter_rows(ran[0], ran[1], batch)  # (B, T', D), absent rows zero
        mask = present.unsqueeze(1).repeat(1, tokens.shape[1])  # (B, T'): every frame is real
        pooled = self.pool(tokens, mask)  # (B, D), exactly zero where the mask row is empty
        return ModalityOutput(pooled=pooled, present=present, tokens=tokens, token_mask=mask)
