"""Dataclass configs, and their conversion to and from plain dicts / YAML.

Configs are nested dataclasses; unknown keys and bad values fail with a message that
names the offending key path (e.g. ``data.image.size``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from crossfuse.data.audio import AudioConfig
from crossfuse.data.image import ImageConfig
from crossfuse.data.tabular import TabularConfig
from crossfuse.data.text import TextConfig
from crossfuse.errors import ConfigError

T = TypeVar("T")


@dataclass
class DataConfig:
    """Preprocessing of each modality, and how bad cells are treated."""

    text: TextConfig = field(default_factory=TextConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    tabular: TabularConfig = field(default_factory=TabularConfig)
    strict: bool = False  # True: any unusable cell is an error instead of an absent modality


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain, JSON/YAML-friendly data."""
    return _plain(dataclasses.asdict(config))


def from_dict(cls: type[T], data: dict[str, Any] | None, *, path: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; nested dataclasses are built recursively.

    Raises:
        ConfigError: unknown key, wrong type, or a value the dataclass rejects.
    """
    data = dict(data or {})
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        where = f" in {path}" if path else ""
        raise ConfigError(
            f"unknown key {unknown[0]!r}{where}; expected one of: {', '.join(sorted(names))}"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value, f"{path}.{name}" if path else name)
    try:
        return cls(**kwargs)
    except ConfigError as e:
        msg = str(e)
        raise ConfigError(f"{path}: {msg}" if path and not msg.startswith(path) else msg) from None
    except TypeError as e:
        raise ConfigError(f"{path or 'config'}: {e}") from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with a clear error for a missing or malformed file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must contain a mapping at the top level")
    return data


def dump_yaml(config: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False), encoding="utf-8")


def _convert(hint: Any, value: Any, path: str) -> Any:
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{path} must be a mapping")
        return from_dict(hint, value, path=path)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, path) if len(inner) == 1 else value
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, bool, str) and not isinstance(value, hint):
        raise ConfigError(f"{path} must be {hint.__name__}, got {value!r}")
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@dataclass
class EncoderConfig:
    """One input's encoder: a registered name and its options."""

    name: str | None = None  # registry name; None → the default for the input's modality
    dim: int = 128  # output width of from-scratch encoders (pretrained ones keep their own)
    finetune: str = "full"  # full: train all; partial: last `partial_blocks` + norms; frozen
    partial_blocks: int = 2  # blocks trained (from the output end) when finetune is partial
    options: dict[str, Any] = field(default_factory=dict)  # extra keyword arguments

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ConfigError(f"encoder dim must be ≥ 1, got {self.dim}")
        if self.finetune not in ("full", "partial", "frozen"):
            raise ConfigError(f"encoder finetune is {self.finetune!r}; use full, partial or frozen")
        if self.partial_blocks < 1:
            raise ConfigError(f"encoder partial_blocks must be ≥ 1, got {self.partial_blocks}")


@dataclass
class ModelConfig:
    """Encoders, fusion and heads."""

    fusion: str = "concat"  # registered fusion name (weighted, concat, late, ...)
    hidden: int = 128  # width of the fused representation
    fusion_options: dict[str, Any] = field(default_factory=dict)  # keyword options of the fusion
    # Per input name (a column, or "tabular") or per modality ("text", "image", ...).
    encoders: dict[str, EncoderConfig] = field(default_factory=dict)
    head_hidden: int = 0  # 0: linear heads; >0: one hidden layer of this width
    dropout: float = 0.1  # dropout before the heads

    def __post_init__(self) -> None:
        self.encoders = {
            k: v
            if isinstance(v, EncoderConfig)
            else from_dict(EncoderConfig, v, path=f"encoders.{k}")
            for k, v in self.encoders.items()
        }
        if self.hidden < 1 or self.head_hidden < 0 or not 0 <= self.dropout < 1:
            raise ConfigError("model.hidden ≥ 1, model.head_hidden ≥ 0 and 0 ≤ model.dropout < 1")


@dataclass
class TrainConfig:
    """Optimisation, stopping and the validation split."""

    epochs: int = 30  # maximum number of epochs
    batch_size: int = 32  # rows per batch
    lr: float = 2e-3  # peak learning rate of AdamW (fusion and heads)
    encoder_lr: float | None = None  # learning rate of the encoders; None → lr
    layer_decay: float = 1.0  # layer-wise LR decay: each block below the top gets × this
    weight_decay: float = 0.01  # AdamW weight decay (not applied to biases and norms)
    warmup: float = 0.1  # share of all steps spent warming the learning rate up
    grad_clip: float = 1.0  # clip the gradient norm to this (0 disables)
    patience: int = 6  # epochs without improvement before early stopping (0 disables)
    monitor: str | None = None  # validation metric to select on; None → accuracy or rmse
    time_limit: float | None = None  # seconds; training stops when exceeded
    modality_dropout: float = 0.0  # chance of hiding each present input of a row in training
    label_smoothing: float = 0.0  # classification label smoothing
    class_weights: str | None = None  # None, or "balanced" (inverse class frequency)
    regression_loss: str = "mse"  # mse or huber
    task_weights: dict[str, float] = field(default_factory=dict)  # multitask loss weights
    valid_fraction: float = 0.15  # share of train held out when no validation table is given
    num_workers: int = 0  # DataLoader worker processes
    seed: int = 0  # seeds model initialisation, shuffling and augmentation
    precision: str = (
        "auto"  # auto: bf16 autocast on CUDA, fp32 elsewhere; or 32, bf16-mixed, 16-mixed
    )
    cache: bool = True  # cache outputs of frozen encoders whose inputs are not augmented
    cache_dir: str | None = None  # None → $CROSSFUSE_CACHE or ~/.cache/crossfuse/embeddings
    devices: int = 1  # processes (GPUs, or CPU processes) per node; > 1 trains with DDP
    num_nodes: int = 1  # machines in a multi-node DDP job
    strategy: str = "auto"  # auto (DDP when devices × num_nodes > 1) or ddp
    checkpoint_every: int | None = None  # with a run directory: optimizer steps between
    # mid-epoch checkpoints (None: a checkpoint after each epoch only)

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, "train.epochs must be ≥ 1"),
            (self.batch_size >= 1, "train.batch_size must be ≥ 1"),
            (self.lr > 0, "train.lr must be > 0"),
            (self.encoder_lr is None or self.encoder_lr > 0, "train.encoder_lr must be > 0"),
            (0 < self.layer_decay <= 1, "train.layer_decay must be in (0, 1]"),
            (0 <= self.warmup < 1, "train.warmup must be in [0, 1)"),
            (0 <= self.modality_dropout < 1, "train.modality_dropout must be in [0, 1)"),
            (0 <= self.label_smoothing < 1, "train.label_smoothing must be in [0, 1)"),
            (self.class_weights in (None, "balanced"), "train.class_weights: None or balanced"),
            (self.regression_loss in ("mse", "huber"), "train.regression_loss: mse or huber"),
            (0 < self.valid_fraction < 1, "train.valid_fraction must be in (0, 1)"),
            (self.time_limit is None or self.time_limit > 0, "train.time_limit must be > 0"),
            (self.devices >= 1, "train.devices must be ≥ 1"),
            (self.num_nodes >= 1, "train.num_nodes must be ≥ 1"),
            (self.strategy in ("auto", "ddp"), "train.strategy: auto or ddp"),
            (
                self.checkpoint_every is None or self.checkpoint_every >= 1,
                "train.checkpoint_every must be ≥ 1 (or null)",
            ),
            (
                self.precision in ("auto", "32", "bf16-mixed", "16-mixed"),
                "train.precision: auto, 32, bf16-mixed or 16-mixed",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


@dataclass
class CrossfuseConfig:
    """Everything that defines a model and how it is trained."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
