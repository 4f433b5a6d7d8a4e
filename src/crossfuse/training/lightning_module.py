"""The LightningModule that trains a FusionModel: losses, optimiser, schedule, validation."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import torch

from crossfuse.config import TrainConfig
from crossfuse.data.problems import Problem, ProblemLog
from crossfuse.models import FusionModel
from crossfuse.models.transfer import param_groups
from crossfuse.training.losses import classification_loss, regression_loss
from crossfuse.training.modality_dropout import drop_modalities
from crossfuse.training.outputs import task_scores, validation_metrics
from crossfuse.training.val_outputs import RowOutputs


class FusionModule(pl.LightningModule):
    """Wraps a :class:`FusionModel` with its training recipe.

    Args:
        model: the model to train.
        config: the training recipe.
        class_weights: optional per-task class weights for the cross-entropy.
        label_scales: per regression task ``(mean, std)`` of the target, so validation
            errors are reported in the label's own units.
    """

    def __init__(
        self,
        model: FusionModel,
        config: TrainConfig,
        *,
        class_weights: dict[str, torch.Tensor] | None = None,
        label_scales: dict[str, tuple[float, float]] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.config = config
        for name, w in (class_weights or {}).items():
            self.register_buffer(f"class_weights_{name}", w)
        self.label_scales = label_scales or {}
        self.problems = ProblemLog()
        # one collector per task, keyed by position (label names may hold dots)
        self.val_outputs = torch.nn.ModuleList(RowOutputs() for _ in model.tasks)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["crossfuse_problems"] = self.problems.to_list()  # seen in epoch 1 only

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.problems.extend([Problem(**p) for p in checkpoint.get("crossfuse_problems", [])])

    def transfer_batch_to_device(self, batch: dict, device: torch.device, dataloader_idx: int):
        """Move tensors only; the batch's problem records stay plain Python objects."""
        tensors = {k: v for k, v in batch.items() if k != "problems"}
        moved = super().transfer_batch_to_device(tensors, device, dataloader_idx)
        moved["problems"] = batch["problems"]
        return moved

    def _loss(
        self, batch: dict, logits: dict[str, torch.Tensor], rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Weighted sum of the task losses, over ``rows`` (all rows when None)."""
        total = torch.zeros((), device=self.device)
        for t in self.model.tasks:
            target, present = batch["targets"][t.name], batch["target_present"][t.name]
            if rows is not None:
                present = present & rows
            if t.task == "classification":
                loss = classification_loss(
                    logits[t.name],
                    target,
                    present,
                    class_weights=getattr(self, f"class_weights_{t.name}", None),
                    label_smoothing=self.config.label_smoothing,
                )
            else:
                loss = regression_loss(
                    logits[t.name], target, present, kind=self.config.regression_loss
                )
            total = total + self.config.task_weights.get(t.name, 1.0) * loss
        return total

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        if self.current_epoch == 0:
            self.problems.extend(batch["problems"])
        keep = None
        if self.config.modality_dropout > 0:
            present = {n: batch["inputs"][n]["present"] for n in self.model.input_names}
            keep = drop_modalities(present, self.config.modality_dropout)
        parts = self.model.training_logits(batch["inputs"], keep)
        loss = sum(self._loss(batch, logits, rows) for logits, rows in parts)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch["index"]))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        logits = self.model(batch["inputs"])
        loss = self._loss(batch, logits)
        self.log("val_loss", loss, prog_bar=True, batch_size=len(batch["index"]), sync_dist=True)
        self.collect_validation(batch, logits)

    def collect_validation(self, batch: dict, logits: dict[str, torch.Tensor]) -> None:
        """Keep this batch's scores for the epoch's metrics (gathered over ranks at the end)."""
        for t, outputs in zip(self.model.tasks, self.val_outputs, strict=True):
            outputs.update(
                task_scores(t.task, logits[t.name]),
                batch["targets"][t.name],
                batch["target_present"][t.name],
                batch["index"],
            )

    def on_validation_epoch_end(self) -> None:
        gathered = {}
        for t, outputs in zip(self.model.tasks, self.val_outputs, strict=True):
            gathered[t.name] = outputs.compute()  # every rank gets the whole table's rows
            outputs.reset()
        values = validation_metrics(self.model.tasks, gathered, self.label_scales)
        for key, value in values.items():  # identical on every rank: no further reduction
            self.log(key, value, prog_bar=key == "val_score", rank_zero_only=False)

    def configure_optimizers(self):
        cfg = self.config
        optimizer = torch.optim.AdamW(
            param_groups(
                self.model,
                lr=cfg.lr,
                encoder_lr=cfg.encoder_lr,
                layer_decay=cfg.layer_decay,
                weight_decay=cfg.weight_decay,
            )
        )
        total = max(total_steps(self.trainer), 1)
        warmup = int(self.config.warmup * total)

        def schedule(step: int) -> float:  # linear warm-up, then cosine decay to 0
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(total - warmup, 1)
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def total_steps(trainer: pl.Trainer) -> int:
    """Optimizer steps of the whole fit, for the learning-rate schedule."""
    per_epoch = getattr(trainer.datamodule, "steps_per_epoch", None)
    if per_epoch is None or trainer.max_epochs is None or trainer.max_epochs < 0:
        return int(trainer.estimated_stepping_batches)
    return math.ceil(per_epoch() / trainer.accumulate_grad_batches) * trainer.max_epochs
