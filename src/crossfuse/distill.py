"""Knowledge distillation: a trained teacher FusionPredictor teaches a small student.

The teacher is frozen and run ONCE over the training and validation rows; its class
probabilities (or standardised values), fused embedding and per-input pooled
embeddings are kept as CPU tensors that the
:class:`~crossfuse.training.distill_module.DistillModule` looks up by row number, so
each distillation epoch costs only the student. The student may use fewer inputs than
the teacher, and rows without a label still teach it through the soft targets.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from crossfuse.config import from_dict
from crossfuse.data.labels import LabelEncoder
from crossfuse.data.media import is_missing
from crossfuse.data.preprocessor import Preprocessor
from crossfuse.data.schema import Schema
from crossfuse.data.split import split_train_valid
from crossfuse.data.table import Table, TableLike, read_table
from crossfuse.data.tabular import category_key
from crossfuse.errors import ConfigError
from crossfuse.model_dir import fingerprint
from crossfuse.teacher_outputs import teacher_targets
from crossfuse.training.distill_losses import FEATURE_KINDS

if TYPE_CHECKING:
    from crossfuse.api import FusionPredictor


@dataclass
class DistillConfig:
    """How the student learns from the teacher.

    Args:
        temperature: softening temperature T of the soft targets (> 0).
        alpha: weight of the hard-label loss; ``1 − alpha`` goes to the teacher's
            outputs (in [0, 1]).
        feature_weight: weight of matching the teacher's fused embedding through a
            learned projector (0 = off).
        feature_kind: ``"mse"`` or ``"cosine"`` for the feature terms.
        modality_feature_weight: weight of matching each shared input's pooled
            embedding, each with its own projector (0 = off).
        relational_weight: weight of relational KD (pairwise distances and angles
            of the fused embeddings in a batch; 0 = off).
    """

    temperature: float = 4.0
    alpha: float = 0.5
    feature_weight: float = 0.0
    feature_kind: str = "mse"
    modality_feature_weight: float = 0.0
    relational_weight: float = 0.0

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ConfigError(f"distill.temperature must be > 0, got {self.temperature!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"distill.alpha must be in [0, 1], got {self.alpha!r}")
        for name in ("feature_weight", "modality_feature_weight", "relational_weight"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"distill.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.feature_kind not in FEATURE_KINDS:
            raise ConfigError(
                f"distill.feature_kind must be one of {', '.join(FEATURE_KINDS)}, "
                f"got {self.feature_kind!r}"
            )


def distill_config(value: DistillConfig | Mapping[str, Any] | None) -> DistillConfig:
    """A :class:`DistillConfig` from itself, a dict of its fields, or None (defaults)."""
    if value is None:
        return DistillConfig()
    if isinstance(value, DistillConfig):
        return value
    if isinstance(value, Mapping):
        return from_dict(DistillConfig, dict(value), path="distill")
    raise ConfigError(f"distill config must be a DistillConfig or a dict, got {type(value)}")


def teacher_labels(teacher: Preprocessor) -> Callable[[Preprocessor, Table], None]:
    """A ``fit_labels`` hook: the student's label encoders become copies of the teacher's.

    So the teacher's probability columns are already in the student's class order
    (classes absent from the student's few labelled rows included: the soft targets
    teach them too) and regression values share the teacher's scale. A student label
    value unknown to the teacher is an error.
    """

    def fit(pre: Preprocessor, table: Table) -> None:
        for col, enc in pre.labels.items():
            t_enc = teacher.labels[col]
            if enc.task != t_enc.task:
                raise ConfigError(
                    f"label {col!r} is {enc.task} for the student but {t_enc.task} for the teacher"
                )
            if enc.task == "classification":
                known = {category_key(c) for c in t_enc.classes}
                cells = table.df[col][~table.df[col].map(is_missing)]
                unknown = sorted({str(v) for v in cells if category_key(v) not in known})
                if unknown:
                    raise ConfigError(
                        f"label {col!r}: class(es) {unknown} are unknown to the teacher "
                        f"(its classes: {t_enc.classes})"
                    )
            pre.labels[col] = LabelEncoder.from_state(t_enc.get_state())

    return fit


def split_labelled(
    table: Table, schema: Schema, fraction: float, seed: int = 0
) -> tuple[Table, Table]:
    """Like :func:`split_train_valid`, but validation comes from labelled rows only;
    every unlabelled row stays in the training part."""
    unlabelled = table.df[schema.labels].map(is_missing).any(axis=1).to_numpy()
    if not unlabelled.any():
        return split_train_valid(table, schema, fraction, seed)
    labelled = Table(table.df[~unlabelled].reset_index(drop=True), table.base_dir, table.name)
    train, valid = split_train_valid(labelled, schema, fraction, seed)
    df = pd.concat([train.df, table.df[unlabelled]], ignore_index=True)
    return Table(df, table.base_dir, train.name), valid


def load_teacher(teacher: FusionPredictor | str | Path, device: str) -> FusionPredictor:
    """The teacher predictor (loaded from its model directory when a path is given)."""
    from crossfuse.api import FusionPredictor

    if isinstance(teacher, str | Path):
        return FusionPredictor.load(teacher, device=device)
    if not isinstance(teacher, FusionPredictor):
        raise ConfigError(
            f"teacher must be a FusionPredictor or a model directory, got {teacher!r}"
        )
    teacher._check_fitted()
    return teacher


def distill_predictor(
    student: FusionPredictor,
    teacher: FusionPredictor | str | Path,
    train: TableLike,
    valid: TableLike | None = None,
    *,
    config: DistillConfig | Mapping[str, Any] | None = None,
    epochs: int | None = None,
    time_limit: float | None = None,
    seed: int | None = None,
) -> FusionPredictor:
    """Train ``student`` (an unfitted predictor, built like for ``fit``) from ``teacher``."""
    from crossfuse.device import resolve_device
    from crossfuse.evaluation.evaluate import evaluate_model
    from crossfuse.model_dir import TB_DIR
    from crossfuse.training.distill_module import DistillModule
    from crossfuse.training.fit import _class_weights, fit_model

    dcfg = distill_config(config)
    teacher = load_teacher(teacher, student.device)
    t_pre = teacher.preprocessor_
    labels = [student.label] if isinstance(student.label, str) else list(student.label)
    for col in labels:
        if col not in t_pre.labels:
            raise ConfigError(
                f"label {col!r} is not one of the teacher's labels ({', '.join(t_pre.labels)})"
            )
    task = student.problem_type or {c: str(t_pre.labels[c].task) for c in labels}
    table = read_table(train)
    inherited = _teacher_ignores(teacher, labels, table)
    cfg, schema, table, train_part, valid_part, pre, model = student._prepare(
        table,
        valid,
        epochs,
        time_limit,
        seed,
        task=task,
        overrides={**inherited, **(student.modalities or {})},
        split=split_labelled,
        fit_labels=teacher_labels(t_pre),
    )
    for col in labels:
        if col not in valid_part.df or valid_part.df[col].map(is_missing).all():
            raise ConfigError(f"the validation rows have no {col!r} labels; validation needs them")
    # Unless told otherwise, select the epoch on the distillation loss over the validation
    # rows: with few labels it is a far steadier signal than their accuracy. (Only for
    # this run: the saved config keeps the user's monitor.)
    train_cfg = dataclasses.replace(cfg.train, monitor=cfg.train.monitor or "val_distill_loss")
    parts = {"train": train_part, "valid": valid_part}
    with torch.random.fork_rng(devices=[]):  # the teacher's loaders draw from the RNG
        cache = {k: teacher_targets(teacher, t) for k, t in parts.items()}
    module = DistillModule(
        model,
        train_cfg,
        dcfg,
        cache,
        teacher_decision_level=getattr(teacher.model_.fusion, "decision_level", False),
        class_weights=_class_weights(pre, train_part, train_cfg),
        label_scales={c: (e.mean, e.std) for c, e in pre.labels.items() if e.task == "regression"},
    )
    device = resolve_device(student.device)
    student._log_root = tempfile.TemporaryDirectory(prefix="crossfuse-")
    student._tensorboard_dir = Path(student._log_root.name) / TB_DIR
    result = fit_model(
        model,
        pre,
        train_part,
        valid_part,
        train_cfg,
        log_dir=student._tensorboard_dir,
        progress=student.progress,
        strict=cfg.data.strict,
        device=device,
        module=module,
    )
    student.config_, student.schema_, student.preprocessor_ = cfg, schema, pre
    student.model_ = model.to(device).eval()
    student.problems_ = result.problems
    labelled = ~train_part.df[labels].map(is_missing).any(axis=1)
    student.fit_summary_ = {
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "monitor": result.monitor,
        "best_score": result.best_score,
        "train_seconds": round(result.seconds, 2),
        "train_rows": len(train_part),
        "labelled_train_rows": int(labelled.sum()),
        "valid_rows": len(valid_part),
        "problems": len(result.problems),
        "cache": result.cache,
        "encode_seconds": round(result.encode_seconds, 2),
        "epoch_seconds": [round(x, 2) for x in result.epoch_seconds],
        "history": result.history,
        "distillation": {
            "teacher": _teacher_summary(teacher),
            "ignored_as_by_teacher": sorted(inherited),
            **dataclasses.asdict(dcfg),
            "teacher_rows_encoded": sum(len(c) for c in cache.values()),
            "teacher_seconds": round(sum(c.seconds for c in cache.values()), 2),
        },
    }
    student.fingerprint_ = fingerprint(table.df)
    student.metrics_ = {"valid": evaluate_model(model, pre, valid_part, cached=result.cached_valid)}
    return student


def _teacher_ignores(teacher: FusionPredictor, labels: list[str], table: Table) -> dict:
    """Columns the student ignores unless told otherwise: those the teacher ignored and
    the teacher's other labels (as inputs they would leak a target)."""
    schema = teacher.schema_
    drop = [c for c, m in schema.columns.items() if m == "ignore"]
    drop += [c for c in schema.labels if c not in labels]
    return {c: "ignore" for c in drop if c in table.df.columns}


def _teacher_summary(teacher: FusionPredictor) -> dict[str, Any]:
    """What identifies the teacher: labels, fusion, inputs, data and validation scores."""
    valid = (teacher.metrics_ or {}).get("valid", {}).get("tasks", {})
    return {
        "labels": list(teacher.preprocessor_.labels),
        "fusion": teacher.config_.model.fusion,
        "inputs": teacher.model_.input_names,
        "train_fingerprint": teacher.fingerprint_,
        "fit": {k: teacher.fit_summary_.get(k) for k in ("epochs", "best_score", "train_rows")},
        "valid": {
            task: {k: v for k, v in m.items() if isinstance(v, int | float)}
            for task, m in valid.items()
        },
    }
