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
        self._loss_sum, self._loss_count = 0.0, 0.0  # this epoch's training batches
        self._resumed_elapsed: float | None = None
        self._trainer: pl.Trainer | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()
        self._loss_sum, self._loss_count = 0.0, 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:
            self._loss_sum += float(loss)
            self._loss_count += 1

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not self._start:
            return
        self.seconds.append(time.perf_counter() - self._start)
        self._start = 0.0
        metrics = trainer.callback_metrics
        first = pl_module.model.tasks[0]
        name, mode = primary_metric(first.task)
        loss_sum, count = self._rank_mean(self._loss_sum, self._loss_count)
        self.rows.append(
            {
                "epoch": trainer.current_epoch + 1,
                "train_loss": loss_sum / count if count else None,
                "valid_loss": _number(metrics.get("val_loss")),
                "valid_metric": _number(metrics.get(f"val_{first.name}_{name}")),
                "metric": name,
            }
        )

    def _rank_mean(self, *values: float) -> list[float]:
        """``values`` averaged over the DDP ranks (as they are with one process).

        Every rank runs the same number of batches, so the mean of the per-rank sums
        over the mean of the counts is the mean loss over every rank's batches.
        """
        trainer = self._trainer
        if trainer is None or trainer.world_size == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=trainer.strategy.root_device)
        return trainer.strategy.reduce(t, reduce_op="mean").tolist()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._resumed_elapsed is not None:  # resumed mid-epoch: the epoch goes on
            self._start = time.perf_counter() - self._resumed_elapsed
            self._resumed_elapsed = None

    def state_dict(self) -> dict[str, Any]:
        # Every rank saves at the same step (rank 0's copy is written), so the partial
        # epoch's losses are averaged over the ranks here, as at the end of an epoch.
        mid_epoch = bool(self._start)  # an epoch is under way (a mid-epoch checkpoint)
        loss = self._rank_mean(self._loss_sum, self._loss_count) if mid_epoch else [0.0, 0.0]
        return {
            "seconds": list(self.seconds),
            "rows": [dict(r) for r in self.rows],
            "epoch_loss": loss,  # [sum, batches] of the epoch so far
            "epoch_elapsed": time.perf_counter() - self._start if mid_epoch else None,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.seconds, self.rows = list(state_dict["seconds"]), list(state_dict["rows"])
        self._loss_sum, self._loss_count = state_dict.get("epoch_loss", [0.0, 0.0])
        self._resumed_elapsed = state_dict.get("epoch_elapsed")


class RngState(pl.Callback):
    """Saves the Python, NumPy and torch (CPU and CUDA) random states in each checkpoint
    and puts them back before the first resumed batch is fetched, so dropout,
    augmentation and modality dropout draw the same numbers as an uninterrupted run."""

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

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Nothing between here and the first training batch draws random numbers: the
        # loaders' iterators take their worker seeds from their own generators.
        state, self._pending = self._pending, None
        if state is None:
            return
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class RunCheckpoint(pl.Callback):
    """Write ``path`` after every validated epoch and, with ``every_n_steps``, after
    every that many optimizer steps inside an epoch, replacing the previous one
    atomically (through the Trainer's checkpoint I/O; in DDP only rank 0 writes)."""

    def __init__(self, path: Path, every_n_steps: int | None = None) -> None:
        self.path = Path(path)
        self.every_n_steps = every_n_steps

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            trainer.save_checkpoint(self.path)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        n = self.every_n_steps
        if not n or trainer.global_step % n or batch_idx + 1 >= trainer.num_training_batches:
            return  # the epoch's last batch is followed by validation and its checkpoint
        trainer.save_checkpoint(self.path)


def _number(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value
