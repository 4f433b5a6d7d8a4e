"""Attention fusion: a small transformer over the inputs, read out through a CLS token.

Every input becomes one token (its projected pooled vector) or, with ``use_tokens``, its
own token sequence (projected, with a learned position embedding); each input's tokens
also get a learned type embedding saying which input they come from. A learned CLS token
is prepended and a stack of pre-norm transformer blocks mixes everything; the CLS
output, after a final LayerNorm, is the fused vector. Absent inputs (and padded tokens;
a present input whose tokens are all padding counts as absent) are excluded with a key
padding mask and zeroed before any layer sees them. The CLS token is never masked, so
no attention row is ever empty, and rows with nothing present still get a finite output.

With ``cross_modal`` (MulT-style, Tsai et al. 2019) every input first runs one
cross-attention block whose queries are its own tokens and whose keys/values are the
tokens of all the OTHER inputs; its outputs are mean-pooled over its real tokens and
these per-input vectors are what the CLS transformer mixes. Where no other input is
present, the attention part is skipped and the input's own tokens pass through on the
residual path.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from crossfuse.encoders.base import ModalityOutput
from crossfuse.errors import ConfigError
from crossfuse.fusion.base import Fusion, register_fusion
from crossfuse.fusion.weighted import (
    check_inputs,
    check_positive_int,
    check_rate,
    clean_pooled,
    present_matrix,
)

Seq = tuple[torch.Tensor, torch.Tensor]  # tokens (B, T, H), real (B, T) bool


def cap_tokens(tokens: torch.Tensor, real: torch.Tensor, max_tokens: int) -> Seq:
    """Shorten ``tokens (B, T, D)`` to at most ``max_tokens`` by masked adaptive average pooling.

    Each output token is the mean of the real tokens in its window; a window without
    real tokens becomes a padded (zero) token. ``tokens`` must be 0 where not ``real``.
    """
    if tokens.shape[1] <= max_tokens:
        return tokens, real
    sums = F.adaptive_avg_pool1d(tokens.transpose(1, 2), max_tokens)  # (B, D, K)
    counts = F.adaptive_avg_pool1d(real.to(tokens.dtype)[:, None, :], max_tokens)  # (B, 1, K)
    keep = counts > 0
    means = sums / torch.where(keep, counts, torch.ones_like(counts))
    return means.transpose(1, 2), keep[:, 0, :]  # (B, K, D), (B, K)


def masked_mean(tokens: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean of ``tokens (B, T, D)`` over ``real (B, T)`` positions; 0 for rows with none."""
    kept = torch.where(real[:, :, None], tokens, torch.zeros_like(tokens))
    count = real.sum(dim=1, keepdim=True).clamp(min=1).to(tokens.dtype)  # (B, 1)
    return kept.sum(dim=1) / count  # (B, D)


class Block(nn.Module):
    """Pre-norm transformer block: (cross-)attention then a feed-forward, both residual."""

    def __init__(self, dim: int, heads: int, rate: float, cross: bool = False) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv: nn.Module = nn.LayerNorm(dim) if cross else nn.Identity()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=rate, batch_first=True)
        self.drop = nn.Dropout(rate)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, 4 * dim),
            nn.GELU(),
            nn.Dropout(rate),
            nn.Linear(4 * dim, dim),
            nn.Dropout(rate),
        )

    def forward(
        self,
        x: torch.Tensor,
        pad: torch.Tensor,
        context: torch.Tensor | None = None,
        use: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Update ``x (B, T, D)``; return it and the head-averaged attention (B, T, S) if asked.

        ``context (B, S, D)`` gives the keys/values (None: self-attention over ``x``);
        ``pad (B, S)`` is True for keys to ignore and must leave every row a key;
        ``use (B,)`` False drops the attention update of that row (residual only).
        """
        q = self.norm_q(x)
        kv = q if context is None else self.norm_kv(context)
        a, w = self.attn(q, kv, kv, key_padding_mask=pad, need_weights=need_weights)
        a = self.drop(a)  # (B, T, D)
        if use is not None:
            a = torch.where(use[:, None, None], a, torch.zeros_like(a))
        x = x + a
        return x + self.ff(self.norm_ff(x)), w


@register_fusion("attention")
class AttentionFusion(Fusion):
    """Transformer over the inputs' tokens with a CLS read-out.

    Args:
        in_dims: {input: pooled width} (also the width of its tokens).
        hidden: model width, also the output width; divisible by ``heads``.
        out_dims: {task: logits width}; unused (feature-level fusion).
        layers: number of self-attention blocks.
        heads: attention heads per block.
        dropout: dropout rate inside the blocks.
        use_tokens: use an input's token sequence when it provides one (else its pooled
            vector).
        cross_modal: first let every input attend to the others (MulT-style).
        max_tokens: longest token sequence kept per input; longer ones are average-pooled.
    """

    def __init__(
        self,
        *,
        in_dims: dict[str, int],
        hidden: int,
        out_dims: dict[str, int] | None = None,
        layers: int = 2,
        heads: int = 4,
        dropout: float = 0.1,
        use_tokens: bool = False,
        cross_modal: bool = False,
        max_tokens: int = 64,
    ) -> None:
        super().__init__()
        self.names = check_inputs(in_dims, hidden)
        check_positive_int("attention layers", layers)
        check_positive_int("attention heads", heads)
        if hidden % heads:
            raise ConfigError(
                f"attention fusion hidden ({hidden}) must be divisible by heads ({heads})"
            )
        rate = check_rate("attention dropout", dropout)
        for what, value in (("use_tokens", use_tokens), ("cross_modal", cross_modal)):
            if not isinstance(value, bool):
                raise ConfigError(f"attention {what} must be true or false, got {value!r}")
        self.max_tokens = check_positive_int("attention max_tokens", max_tokens)
        self.out_dim = hidden
        self.use_tokens = use_tokens
        self.in_dims = {n: in_dims[n] for n in self.names}
        self.proj = nn.ModuleList(nn.Linear(in_dims[n], hidden) for n in self.names)
        self.type_emb = nn.Parameter(torch.randn(len(self.names), hidden) * 0.02)  # (M, H)
        self.pos_emb = nn.Parameter(torch.randn(max_tokens, hidden) * 0.02) if use_tokens else None
        self.cls = nn.Parameter(torch.randn(hidden) * 0.02)
        self.cross = (
            nn.ModuleList(Block(hidden, heads, rate, cross=True) for _ in self.names)
            if cross_modal
            else None
        )
        self.blocks = nn.ModuleList(Block(hidden, heads, rate) for _ in range(layers))
        self.norm = nn.LayerNorm(hidden)

    def sequences(self, outputs: dict[str, ModalityOutput]) -> list[Seq]:
        """Every input's projected tokens and which are real, in sorted input order.

        An input is one token unless ``use_tokens`` is on and it has ``tokens``. Tokens of
        absent rows and padded tokens are replaced by zeros before anything touches them.
        """
        present = present_matrix(outputs, self.names)  # (B, M)
        seqs = []
        for i, (n, proj) in enumerate(zip(self.names, self.proj, strict=True)):
            out = outputs[n]
            if self.use_tokens and out.tokens is not None:
                real = self._real_tokens(n, out) & present[:, i : i + 1]  # (B, T)
                tokens = torch.where(real[:, :, None], out.tokens, torch.zeros_like(out.tokens))
                tokens, real = cap_tokens(tokens, real, self.max_tokens)
                assert self.pos_emb is not None
                h = proj(tokens) + self.pos_emb[: tokens.shape[1]]  # (B, T, H)
            else:
                h = proj(clean_pooled(out))[:, None, :]  # (B, 1, H)
                real = present[:, i : i + 1]  # (B, 1)
            seqs.append((h + self.type_emb[i], real))
        return seqs

    def _real_tokens(self, name: str, out: ModalityOutput) -> torch.Tensor:
        """The token mask of ``out`` (all real when it has none), after checking shapes."""
        tokens = out.tokens
        assert tokens is not None
        if tokens.dim() != 3 or tokens.shape[2] != self.in_dims[name]:
            raise ConfigError(
                f"attention fusion: tokens of input {name!r} have shape {tuple(tokens.shape)}, "
                f"expected (batch, length, {self.in_dims[name]})"
            )
        if out.token_mask is None:
            return torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        if out.token_mask.shape != tokens.shape[:2]:
            raise ConfigError(
                f"attention fusion: token_mask of input {name!r} has shape "
                f"{tuple(out.token_mask.shape)}, expected {tuple(tokens.shape[:2])}"
            )
        return out.token_mask.bool()

    def cross_attend(self, seqs: list[Seq]) -> list[Seq]:
        """MulT step: each input attends to the others; pooled to one token per input."""
        assert self.cross is not None
        pooled = []
        for i, (block, (h, real)) in enumerate(zip(self.cross, seqs, strict=True)):
            others = [s for j, s in enumerate(seqs) if j != i]
            if others:
                context = torch.cat([t for t, _ in others], dim=1)  # (B, S, H)
                keys = torch.cat([r for _, r in others], dim=1)  # (B, S)
            else:  # a single input has nothing to attend to
                context, keys = h, torch.zeros_like(real)
            has_keys = keys.any(dim=1)  # (B,)
            pad = ~keys & has_keys[:, None]  # rows without keys attend anywhere, then drop it
            y, _ = block(h, pad, context=context, use=has_keys)  # (B, T, H)
            pooled.append((masked_mean(y, real)[:, None, :], real.any(dim=1, keepdim=True)))
        return pooled

    def encode(
        self, outputs: dict[str, ModalityOutput], need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None, list[int]]:
        """Run the transformer.

        Returns:
            The fused ``(B, H)``; when ``need_weights``, the CLS token's attention
            ``(B, 1 + S)`` averaged over heads and layers (else None); and the number of
            tokens of each input in that sequence, in sorted input order.
        """
        seqs = self.sequences(outputs)
        if self.cross is not None:
            seqs = self.cross_attend(seqs)
        batch = seqs[0][0].shape[0]
        x = torch.cat([self.cls.expand(batch, 1, -1), *(h for h, _ in seqs)], dim=1)  # (B, S, H)
        real = torch.cat([torch.ones_like(seqs[0][1][:, :1]), *(r for _, r in seqs)], dim=1)
        attention = None
        for block in self.blocks:
            x, w = block(x, ~real, need_weights=need_weights)
            if w is not None:
                cls_row = w[:, 0, :] / len(self.blocks)  # (B, S)
                attention = cls_row if attention is None else attention + cls_row
        return self.norm(x[:, 0]), attention, [h.shape[1] for h, _ in seqs]

    def modality_weights(self, outputs: dict[str, ModalityOutput]) -> dict[str, torch.Tensor]:
        """{input: (B,) share of the CLS token's attention}, 0 where the input is absent.

        The attention to each input's tokens is averaged over heads and layers and
        renormalised over the inputs (the CLS token's attention to itself is left out).
        In training mode it includes attention dropout.
        """
        _, attention, lengths = self.encode(outputs, need_weights=True)
        assert attention is not None
        parts = attention[:, 1:].split(lengths, dim=1)
        w = torch.stack([p.sum(dim=1) for p in parts], dim=1)  # (B, M)
        total = w.sum(dim=1, keepdim=True)
        w = w / torch.where(total > 0, total, torch.ones_like(total))
        return {n: w[:, i] for i, n in enumerate(self.names)}

    def forward(self, outputs: dict[str, ModalityOutput]) -> torch.Tensor:
        return self.encode(outputs)[0]
