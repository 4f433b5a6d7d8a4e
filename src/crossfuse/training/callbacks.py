"""Callbacks: the best weights, the learning curves and the RNG, all resumable.

Each keeps its state in ``state_dict`` so a run resumed from a checkpoint continues
exactly where the interrupted one stopped.
"""

from __future__ import annotations

import copy
import math
import random
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

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

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "weights": self._state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best, self.best_epoch = state_dict["best"], state_dict["best_epoch"]
        self._state = state_dict["weights"]


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
        train_loss = sum(self._losses) / len(self._losses) if self._losses else None
        if trainer.world_size > 1:  # the mean over every rank's batches, not rank 0's alone
            mean = torch.tensor(-1.0 if train_loss is None else train_loss, device=pl_module.device)
            train_loss = float(trainer.strategy.reduce(mean, reduce_op="mean"))
        self.rows.append(
            {
                "epoch": trainer.current_epoch + 1,
                "train_loss": train_loss,
                "valid_loss": _number(metrics.get("val_loss")),
                "valid_metric": _number(metrics.get(f"val_{first.name}_{name}")),
                "metric": name,
            }
        )

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": list(self.seconds), "rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.seconds, self.rows = list(state_dict["seconds"]), list(state_dict["rows"])


class RngState(pl.Callback):
    """Saves the Python, NumPy and torch (CPU and CUDA) random states in each checkpoint
    and puts them back before the first resumed epoch, so dropout, augmentation and
    modality dropout draw the same numbers as an uninterrupted run."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        state, self._pending = self._pending, None
        if state is None:
            return
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class EpochCheckpoint(pl.Callback):
    """Write ``path`` after every validated epoch, replacing the previous one atomically
    (through the Trainer's checkpoint I/O; in DDP only rank 0 writes)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            trainer.save_checkpoint(self.path)


def _number(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value
