"""The teacher's outputs for every row of a table, computed once for distillation.

Class probabilities (or standardised values), the fused embedding and each input's
pooled embedding, kept as tensors and looked up by row number, so distillation epochs
cost only the student.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from crossfuse.data.table import Table
from crossfuse.model_dir import fingerprint
from crossfuse.models.inference import run_inference

if TYPE_CHECKING:
    from crossfuse.api import FusionPredictor


@dataclass
class TeacherTargets:
    """The teacher's outputs for every row of one table, in row order."""

    scores: dict[str, torch.Tensor]  # task → (N, C) probabilities or (N,) standardised values
    fused: torch.Tensor | None  # (N, H)
    pooled: dict[str, torch.Tensor] = field(default_factory=dict)  # input → (N, D)
    present: dict[str, torch.Tensor] = field(default_factory=dict)  # input → (N,) bool
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(next(iter(self.scores.values())))

    def to(self, device: torch.device | str) -> TeacherTargets:
        """A copy on ``device``."""
        return self._map(lambda x: x.to(device))

    def select(self, index: torch.Tensor) -> TeacherTargets:
        """The rows ``index`` (a batch's ``index``: row numbers in the table)."""
        return self._map(lambda x: x[index.to(x.device)])

    def _map(self, fn) -> TeacherTargets:
        return TeacherTargets(
            scores={k: fn(v) for k, v in self.scores.items()},
            fused=None if self.fused is None else fn(self.fused),
            pooled={k: fn(v) for k, v in self.pooled.items()},
            present={k: fn(v) for k, v in self.present.items()},
            seconds=self.seconds,
        )


def teacher_targets(
    teacher: FusionPredictor, table: Table, *, batch_size: int = 64
) -> TeacherTargets:
    """Run the (frozen) teacher once over ``table``; rows need no labels.

    The result is kept on the teacher object, keyed by the table's contents and folder,
    so several students distilled from one teacher in a process share one teacher pass.
    """
    memo = teacher.__dict__.setdefault("_teacher_targets", {})
    key = (id(teacher.model_), fingerprint(table.df), str(table.base_dir), batch_size)
    if key in memo:
        return memo[key]
    start = time.perf_counter()
    inf = run_inference(
        teacher.model_,
        teacher.preprocessor_,
        table,
        labels=False,
        embeddings=True,
        batch_size=batch_size,
        strict=teacher.config_.data.strict,
    )
    memo[key] = TeacherTargets(
        scores=inf.scores,
        fused=inf.fused,
        pooled=inf.pooled,
        present=inf.present,
        seconds=time.perf_counter() - start,
    )
    return memo[key]
