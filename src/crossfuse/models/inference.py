"""Running a trained model over a table: scores per task, targets, embeddings, problems."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader

from crossfuse.data.dataset import Collator, FusionDataset
from crossfuse.data.preprocessor import Preprocessor
from crossfuse.data.problems import ProblemLog
from crossfuse.data.table import Table
from crossfuse.models.fusion_model import FusionModel

KeepFn = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


@dataclass
class Inference:
    """Outputs for every row of a table, in row order."""

    scores: dict[str, torch.Tensor]  # task → (N, C) probabilities or (N,) standardised values
    targets: dict[str, torch.Tensor] = field(default_factory=dict)  # task → (N,)
    target_present: dict[str, torch.Tensor] = field(default_factory=dict)  # task → (N,) bool
    present: dict[str, torch.Tensor] = field(default_factory=dict)  # input → (N,) bool
    fused: torch.Tensor | None = None  # (N, H) when embeddings were asked for
    pooled: dict[str, torch.Tensor] = field(default_factory=dict)  # input → (N, D)
    problems: ProblemLog = field(default_factory=ProblemLog)


@torch.inference_mode()
def run_inference(
    model: FusionModel,
    pre: Preprocessor,
    table: Table,
    *,
    labels: bool,
    keep: KeepFn | None = None,
    embeddings: bool = False,
    batch_size: int = 64,
    strict: bool = False,
    loader: Iterable[dict[str, Any]] | None = None,
) -> Inference:
    """Score every row of ``table``.

    Args:
        labels: read the label columns (needed for evaluation).
        keep: maps the batch's presence masks to the masks to use (ablation); a batch may
            also carry its own ``"keep"`` masks (input → (B,) bool).
        embeddings: also return the fused and per-input pooled embeddings.
        loader: reuse a prepared DataLoader (or its decoded batches) instead of building
            one from ``table``.
    """
    model.eval()
    if loader is None:
        dataset = FusionDataset(table, pre, labels=labels, strict=strict)
        loader = DataLoader(dataset, batch_size=batch_size, collate_fn=Collator(pre))
    device = next(model.parameters()).device
    parts: dict[str, list[torch.Tensor]] = {}
    problems = ProblemLog()

    def add(key: str, value: torch.Tensor) -> None:
        parts.setdefault(key, []).append(
            value.detach().float().cpu() if value.is_floating_point() else value.detach().cpu()
        )

    for batch in loader:
        inputs = _to(batch["inputs"], device)
        problems.extend(batch["problems"])
        present = {n: inputs[n]["present"] for n in model.input_names}
        masks = keep(present) if keep is not None else None
        if "keep" in batch:  # per-row masks carried by the batch (robustness evaluation)
            masks = {**(masks or {}), **{n: m.to(device) for n, m in batch["keep"].items()}}
        outputs = model.encode(inputs, masks)
        fused = model.fuse(outputs)
        logits = model.heads_forward(fused)
        for t in model.tasks:
            add(
                f"score/{t.name}",
                logits[t.name].softmax(-1)
                if t.task == "classification"
                else logits[t.name].reshape(-1),
            )
            if labels:
                add(f"target/{t.name}", batch["targets"][t.name])
                add(f"tpresent/{t.name}", batch["target_present"][t.name])
        for name, out in outputs.items():
            add(f"present/{name}", out.present)
            if embeddings:
                add(f"pooled/{name}", out.pooled)
        if embeddings:
            add("fused", fused)

    cat = {k: torch.cat(v) for k, v in parts.items()}
    pick = lambda prefix: {k.split("/", 1)[1]: v for k, v in cat.items() if k.startswith(prefix)}  # noqa: E731
    return Inference(
        scores=pick("score/"),
        targets=pick("target/"),
        target_present=pick("tpresent/"),
        present=pick("present/"),
        fused=cat.get("fused"),
        pooled=pick("pooled/"),
        problems=problems,
    )


def concat_inferences(parts: Sequence[Inference]) -> Inference:
    """One :class:`Inference` for consecutive row chunks' inferences, rows in order.

    Problems are merged as each part reports them (rows relative to its own chunk);
    callers that need table-wide row numbers shift them before (see
    :mod:`crossfuse.evaluation.streaming`).
    """
    if not parts:
        return Inference(scores={})
    if len(parts) == 1:
        return parts[0]

    def cat(field_name: str) -> dict[str, torch.Tensor]:
        keys = getattr(parts[0], field_name)
        return {k: torch.cat([getattr(p, field_name)[k] for p in parts]) for k in keys}

    problems = ProblemLog()
    for part in parts:
        problems.extend(list(part.problems))
    fused = [p.fused for p in parts]
    return Inference(
        scores=cat("scores"),
        targets=cat("targets"),
        target_present=cat("target_present"),
        present=cat("present"),
        fused=torch.cat(fused) if all(f is not None for f in fused) else None,  # type: ignore[arg-type]
        pooled=cat("pooled"),
        problems=problems,
    )


def _to(inputs: dict[str, dict[str, torch.Tensor]], device: torch.device) -> dict:
    return {n: {k: v.to(device) for k, v in d.items()} for n, d in inputs.items()}
