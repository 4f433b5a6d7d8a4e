"""The training loop: datasets, loaders, callbacks and the Lightning Trainer."""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping, RichProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies import DDPStrategy

from crossfuse.cache.sharded import RankGroup
from crossfuse.config import TrainConfig
from crossfuse.data.preprocessor import Preprocessor
from crossfuse.data.problems import ProblemLog
from crossfuse.data.table import Table
from crossfuse.device import lightning_accelerator, resolve_device, resolve_precision
from crossfuse.errors import CellError, ConfigError
from crossfuse.models import FusionModel
from crossfuse.training.cached_inputs import cacheable_inputs
from crossfuse.training.callbacks import BestWeights, History, RngState, RunCheckpoint
from crossfuse.training.checkpoint_io import SafeCheckpointIO
from crossfuse.training.data_module import FusionDataModule
from crossfuse.training.lightning_module import FusionModule
from crossfuse.training.losses import balanced_class_weights


@dataclass
class FitResult:
    """What happened during training."""

    epochs: int
    best_epoch: int | None
    best_score: float | None
    monitor: str
    seconds: float
    problems: ProblemLog
    cache: dict[str, dict[str, int]]  # cached input → cells encoded now / found in the cache
    encode_seconds: float = 0.0  # time spent filling the embedding cache before epoch 1
    epoch_seconds: list[float] = field(default_factory=list)  # per epoch, validation included
    history: list[dict] = field(default_factory=list)  # per epoch: losses and validation score
    cached_valid: dict = field(default_factory=dict)  # input → CachedColumn of the valid rows
    global_rank: int = 0  # this process's rank in a DDP job (0 when alone)
    world_size: int = 1  # processes that trained together


def monitor_mode(monitor: str) -> str:
    """Lower is better for losses and errors; higher for everything else."""
    lowered = monitor.lower()
    return "min" if any(k in lowered for k in ("loss", "rmse", "mse", "mae")) else "max"


CHECKPOINT_DIR = "checkpoints"  # inside a run directory
LAST_CHECKPOINT = "last.safetensors"


def last_checkpoint(run_dir: Path) -> Path:
    """Where the latest checkpoint of a run directory lives."""
    return Path(run_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT


def fit_model(
    model: FusionModel,
    pre: Preprocessor,
    train: Table,
    valid: Table,
    config: TrainConfig,
    *,
    log_dir: Path,
    progress: bool = True,
    strict: bool = False,
    device: torch.device | None = None,
    module: FusionModule | None = None,
    run_dir: Path | None = None,
    resume: bool = False,
) -> FitResult:
    """Train ``model`` in place on ``train``, selecting the best epoch on ``valid``.

    ``module`` is the LightningModule to train (it must wrap ``model``), e.g. a
    distillation module; None builds the plain :class:`FusionModule`. With
    ``config.devices × config.num_nodes > 1`` Lightning runs DDP: every process calls
    this function and gets the same trained weights; :attr:`FitResult.global_rank`
    says which process this is. ``run_dir`` keeps a checkpoint after every epoch and
    every ``config.checkpoint_every`` steps (weights, optimizer, schedule, RNG, loops,
    the position in the epoch); ``resume`` continues from it.
    """
    if module is not None and module.model is not model:
        raise ValueError("fit_model: `module` must wrap the `model` being trained")
    checkpoint = last_checkpoint(run_dir) if run_dir is not None else None
    if resume and (checkpoint is None or not checkpoint.is_file()):
        raise ConfigError(f"nothing to resume: no checkpoint at {checkpoint}")
    device = device or resolve_device("auto")
    start = time.perf_counter()
    data = FusionDataModule(
        model,
        pre,
        train,
        valid,
        config,
        cached_inputs=cacheable_inputs(model, pre, config),
        strict=strict,
        progress=_encode_progress if progress else None,
    )
    if module is None:
        module = FusionModule(
            model,
            config,
            class_weights=_class_weights(pre, train, config),
            label_scales={
                c: (e.mean, e.std) for c, e in pre.labels.items() if e.task == "regression"
            },
        )
    monitor = config.monitor or "val_score"
    mode = "max" if monitor == "val_score" else monitor_mode(monitor)
    best = BestWeights(monitor, mode)
    timer = History()
    callbacks: list[pl.Callback] = [best, timer, RngState()]
    if config.patience > 0:
        callbacks.append(EarlyStopping(monitor, mode=mode, patience=config.patience))
    if progress:
        callbacks.append(RichProgressBar(leave=False))
    if checkpoint is not None:
        callbacks.append(RunCheckpoint(checkpoint, config.checkpoint_every))
    with warnings.catch_warnings(), _quiet_lightning():
        trainer = pl.Trainer(
            max_epochs=config.epochs,
            max_time={"seconds": config.time_limit} if config.time_limit else None,
            accelerator=lightning_accelerator(device),
            **_placement(config, device),
            precision=resolve_precision(config.precision, device),
            logger=TensorBoardLogger(str(log_dir), name="", version="", default_hp_metric=False),
            callbacks=callbacks,
            plugins=[SafeCheckpointIO()],
            enable_checkpointing=False,  # RunCheckpoint writes the run's checkpoint
            enable_model_summary=False,
            enable_progress_bar=progress,
            gradient_clip_val=config.grad_clip or None,
            num_sanity_val_steps=0,
            use_distributed_sampler=False,  # FusionDataModule shards the rows itself
            log_every_n_steps=max(1, min(50, len(train) // config.batch_size)),
        )
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        warnings.filterwarnings("ignore", message=".*overridden `transfer_batch_to_device`.*")
        # frozen pretrained blocks stay in eval mode on purpose (BatchNorm statistics)
        warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
        trainer.fit(module, datamodule=data, ckpt_path=str(checkpoint) if resume else None)
    model.eval()
    group = RankGroup.current(trainer.local_rank)
    if group is not None:  # each rank met the problems of its own shard
        for part in group.all_gather(list(module.problems)):
            module.problems.extend(part)
    cached = data.cached
    return FitResult(
        epochs=trainer.current_epoch,
        best_epoch=best.best_epoch,
        best_score=best.best,
        monitor=monitor,
        seconds=time.perf_counter() - start,
        problems=module.problems,
        cache={
            col: {
                "encoded": sum(cached[p][col].encoded for p in cached),
                "reused": sum(cached[p][col].reused for p in cached),
            }
            for col in data.cached_inputs
        },
        encode_seconds=data.encode_seconds,
        epoch_seconds=timer.seconds,
        history=timer.rows,
        cached_valid=cached["valid"],
        global_rank=trainer.global_rank,
        world_size=trainer.world_size,
    )


def _placement(config: TrainConfig, device: torch.device) -> dict[str, Any]:
    """The Trainer's devices, nodes and strategy: one process on ``device``, or DDP."""
    if config.devices * config.num_nodes == 1 and config.strategy == "auto":
        devices: int | list[int] = [device.index] if device.index is not None else 1
        return {"devices": devices, "num_nodes": 1, "strategy": "auto"}
    # find_unused_parameters: a batch may lack a modality (or drop it), leaving its
    # encoder without gradients in that step
    strategy = DDPStrategy(find_unused_parameters=True)
    return {"devices": config.devices, "num_nodes": config.num_nodes, "strategy": strategy}


def _encode_progress(column: str, table: str):
    """A progress callback for :func:`precompute` that draws a rich bar on stderr."""
    from rich.progress import Progress

    state: dict = {}

    def update(done: int, total: int) -> None:
        if "bar" not in state:
            state["bar"] = Progress(transient=True)
            state["bar"].start()
            state["task"] = state["bar"].add_task(f"encoding {column!r} once", total=total)
        state["bar"].update(state["task"], completed=done)
        if done >= total:
            state["bar"].stop()

    return update


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Hide Lightning's start-up chatter (GPU/TPU lines, tips) for the length of one fit."""
    names = [n for n in logging.root.manager.loggerDict if n.startswith("lightning")]
    loggers = [logging.getLogger(n) for n in ["lightning.pytorch", *names]]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _class_weights(pre: Preprocessor, train: Table, config: TrainConfig) -> dict[str, torch.Tensor]:
    if config.class_weights != "balanced":
        return {}
    weights = {}
    for col, enc in pre.labels.items():
        if enc.task != "classification":
            continue
        counts = torch.zeros(enc.num_classes)
        for value in train.df[col]:
            try:
                counts[int(enc.encode(value))] += 1
            except CellError:  # missing labels carry no weight
                continue
        weights[col] = balanced_class_weights(counts)
    return weights
