"""Callbacks: keep the best weights in memory and restore them when training ends."""

from __future__ import annotations

import copy
import math
import time

import lightning.pytorch as pl

from crossfuse.evaluation.metrics import primary_metric


class BestWeights(pl.Callback):
    """Remember the weights of the best validation epoch and load them at the end of fit.

    Kept in memory (no checkpoint file, so nothing is ever unpickled).
    """

    def __init__(self, monitor: str, mode: str = "max") -> None:
        self.monitor = monitor
        self.mode = mode
        self.best: float | None = None
        self.best_epoch: int | None = None
        self._state: dict | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        if math.isnan(value):
            return
        better = self.best is None or (
            value > self.best if self.mode == "max" else value < self.best
        )
        if better:
            self.best, self.best_epoch = value, trainer.current_epoch
            self._state = copy.deepcopy(
                {k: v.detach().cpu() for k, v in pl_module.state_dict().items()}
            )

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._state is not None:
            pl_module.load_state_dict(self._state)


class History(pl.Callback):
    """Per training epoch: wall-clock seconds (validation included), mean training loss,
    validation loss and validation score — the learning curves of the report."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.rows: list[dict[str, float | int | None]] = []
        self._start = 0.0
        self._losses: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()
        self._losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:
            self._losses.append(float(loss))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not self._start:
            return
        self.seconds.append(time.perf_counter() - self._start)
        self._start = 0.0
        metrics = trainer.callback_metrics
        first = pl_module.model.tasks[0]
        name, mode = primary_metric(first.task)
        self.rows.append(
            {
                "epoch": trainer.current_epoch + 1,
                "train_loss": sum(self._losses) / len(self._losses) if self._losses else None,
                "valid_loss": _number(metrics.get("val_loss")),
                "valid_metric": _number(metrics.get(f"val_{first.name}_{name}")),
                "metric": name,
            }
        )


def _number(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value
