"""Callbacks: keep the best weights in memory and restore them when training ends."""

from __future__ import annotations

import copy
import math

import lightning.pytorch as pl


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
