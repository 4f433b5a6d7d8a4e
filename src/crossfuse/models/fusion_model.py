"""FusionModel: encoders (one per input) → fusion → one head per task.

Exposes ``encode``, ``fuse`` and ``forward`` separately so ablation, distillation and
embedding extraction can hook in between stages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from crossfuse.config import EncoderConfig, ModelConfig
from crossfuse.encoders import DEFAULT_ENCODERS, InputSpec, ModalityOutput, create_encoder
from crossfuse.fusion import create_fusion
from crossfuse.models.transfer import apply_finetune, keep_batchnorm_statistics


@dataclass
class TaskSpec:
    """One label's task and output width (classes, or 1 for regression)."""

    name: str
    task: str  # classification | regression
    out_dim: int


class FusionModel(nn.Module):
    """Encoders + fusion + heads, composed (the model holds no data logic)."""

    def __init__(
        self,
        encoders: dict[str, nn.Module],
        fusion: nn.Module,
        tasks: list[TaskSpec],
        *,
        head_hidden: int = 0,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.fusion = fusion
        self.tasks = list(tasks)
        self.heads = nn.ModuleDict()
        if not getattr(fusion, "decision_level", False):
            for t in self.tasks:
                self.heads[t.name] = _head(fusion.out_dim, t.out_dim, head_hidden, dropout)

    def train(self, mode: bool = True) -> FusionModel:
        """Like ``nn.Module.train``; partly frozen encoders keep their BatchNorm statistics."""
        super().train(mode)
        if mode:
            for encoder in self.encoders.values():
                keep_batchnorm_statistics(encoder)
        return self

    @property
    def input_names(self) -> list[str]:
        return sorted(self.encoders)

    def encode(
        self,
        inputs: dict[str, dict[str, torch.Tensor]],
        keep: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, ModalityOutput]:
        """Run every encoder; ``keep`` (input → (B,) bool) hides inputs, e.g. for ablation."""
        outputs = {}
        for name in self.input_names:
            batch = inputs[name]
            if "cached_pooled" in batch:  # features computed once by the frozen encoder
                out = ModalityOutput(
                    batch["cached_pooled"],
                    batch["present"],
                    batch.get("cached_tokens"),
                    batch.get("cached_token_mask"),
                )
            else:
                out = self.encoders[name](batch)
            if keep is not None and name in keep:
                out = out.masked(keep[name].to(out.present.device))
            outputs[name] = out
        return outputs

    def fuse(self, outputs: dict[str, ModalityOutput]) -> torch.Tensor:
        """(B, H): the fused representation (for decision-level fusions, all tasks' logits)."""
        return self.fusion(outputs)

    def heads_forward(self, fused: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per task from the fused representation."""
        if len(self.heads) == 0:  # decision-level fusion: fused = concatenated logits
            return dict(
                zip(
                    [t.name for t in self.tasks],
                    fused.split([t.out_dim for t in self.tasks], dim=1),
                    strict=True,
                )
            )
        return {t.name: self.heads[t.name](fused) for t in self.tasks}

    def forward(
        self,
        inputs: dict[str, dict[str, torch.Tensor]],
        keep: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Logits per task: ``{task: (B, out_dim)}``."""
        return self.heads_forward(self.fuse(self.encode(inputs, keep)))

    def training_logits(
        self,
        inputs: dict[str, dict[str, torch.Tensor]],
        keep: dict[str, torch.Tensor] | None = None,
    ) -> list[tuple[dict[str, torch.Tensor], torch.Tensor | None]]:
        """What the training loss is computed on: ``[(logits per task, rows or None)]``.

        Usually the fused logits over all rows. A fusion with ``members`` (an ensemble)
        gives one entry per member with the rows it sees, so each is fitted on its own.
        """
        outputs = self.encode(inputs, keep)
        if hasattr(self.fusion, "members"):
            return [(self.heads_forward(lg), rows) for lg, rows in self.fusion.members(outputs)]
        return [(self.heads_forward(self.fuse(outputs)), None)]


def _head(in_dim: int, out_dim: int, hidden: int, dropout: float) -> nn.Module:
    if hidden <= 0:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, out_dim))
    return nn.Sequential(
        nn.Dropout(dropout),
        nn.Linear(in_dim, hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, out_dim),
    )


def encoder_config_for(config: ModelConfig, name: str, modality: str) -> EncoderConfig:
    """Per-input config wins over per-modality config, which wins over the defaults."""
    return config.encoders.get(name) or config.encoders.get(modality) or EncoderConfig()


def build_model(specs: list[InputSpec], tasks: list[TaskSpec], config: ModelConfig) -> FusionModel:
    """Create encoders for ``specs``, the configured fusion over them, and the heads."""
    encoders: dict[str, nn.Module] = {}
    for spec in specs:
        enc_cfg = encoder_config_for(config, spec.name, spec.modality)
        name = enc_cfg.name or DEFAULT_ENCODERS[spec.modality]
        options: dict[str, Any] = {"dim": enc_cfg.dim, **enc_cfg.options}
        encoder = create_encoder(name, spec, **options)
        apply_finetune(encoder, enc_cfg.finetune, enc_cfg.partial_blocks)
        encoders[spec.name] = encoder
    in_dims = {n: e.out_dim for n, e in encoders.items()}
    fusion = create_fusion(
        config.fusion,
        in_dims,
        hidden=config.hidden,
        out_dims={t.name: t.out_dim for t in tasks},
        **config.fusion_options,
    )
    return FusionModel(
        encoders, fusion, tasks, head_hidden=config.head_hidden, dropout=config.dropout
    )
