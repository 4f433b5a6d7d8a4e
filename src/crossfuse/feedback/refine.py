"""Refine a served model on user feedback, keeping it only if it did not get worse.

The candidate is a copy of the live model fine-tuned (same fitted preprocessing, lower
learning rate, few epochs) on the feedback rows plus a replay sample of the original
training data, so it learns the corrections without forgetting the rest. It is always
kept as ``MODEL/versions/N``; it goes live only if its held-out primary metric is not
worse than the live model's by more than ``tolerance``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crossfuse.api import FusionPredictor
from crossfuse.data.media import is_missing
from crossfuse.data.split import split_train_valid
from crossfuse.data.table import Table, TableLike, read_table
from crossfuse.device import resolve_device
from crossfuse.errors import CellError, ConfigError
from crossfuse.evaluation.evaluate import evaluate_model
from crossfuse.evaluation.metrics import primary_metric
from crossfuse.feedback.store import FeedbackStore
from crossfuse.model_dir import META_FILE, TB_DIR, fingerprint, write_model_dir
from crossfuse.models import FusionModel
from crossfuse.training.fit import FitResult, fit_model
from crossfuse.versions import (
    current_version,
    metrics_summary,
    new_version_dir,
    promote,
    record,
    resolve_model_dir,
)

HOLDOUT_FRACTION = 0.2  # share of --data kept out of the replay when no --holdout is given
LR_FACTOR = 0.3  # default fine-tuning LR: the model's train.lr × this
MIN_REPLAY, REPLAY_PER_FEEDBACK = 256, 4  # default replay size: max(4 × feedback, 256)
_DB_SUFFIXES = (".sqlite", ".sqlite3", ".db")

FeedbackSource = FeedbackStore | pd.DataFrame | Table | str | Path


@dataclass
class RefineResult:
    """What a refine did: the candidate, whether it went live, and why."""

    version: int  # the candidate's version number
    parent: int  # the version that was live when refining started
    promoted: bool
    reason: str
    current: int  # the live version afterwards
    model_dir: Path  # MODEL/versions/<version>
    metric: str  # the primary metric compared (accuracy or rmse)
    metrics: dict[str, Any] = field(default_factory=dict)  # {"old"|"new": {"holdout", "feedback"}}
    feedback_rows: int = 0
    replay_rows: int = 0
    holdout_rows: int = 0


def refine_model(
    model_dir: str | Path,
    store_or_frame: FeedbackSource,
    *,
    data: TableLike | None = None,
    holdout: TableLike | None = None,
    epochs: int = 5,
    lr: float | None = None,
    replay: int | None = None,
    tolerance: float = 0.01,
    seed: int = 0,
    out: str | Path | None = None,
    device: str = "auto",
) -> RefineResult:
    """Fine-tune the live version on feedback (+ replay) and promote it only if not worse.

    Args:
        model_dir: the model directory (plain or versioned).
        store_or_frame: a :class:`FeedbackStore`, its SQLite path, or a table of
            feedback rows (the label in the model's label column or in ``label``).
        data: the original training table: replay rows, and the held-out set when
            ``holdout`` is not given (a stratified 20% kept out of the replay).
        holdout: the table both versions are judged on.
        epochs: fine-tuning epochs.
        lr: fine-tuning learning rate (default: the model's ``train.lr`` × 0.3).
        replay: replay rows from ``data`` (default max(4 × feedback rows, 256)).
        tolerance: how much worse (absolute) the held-out metric may get and still promote.
        seed: seeds the split, the replay sample and training.
        out: also copy the candidate's model directory here.
        device: where to train (``auto``, ``cpu``, ``cuda:0``, ...).
    """
    if data is None and holdout is None:
        raise ConfigError(
            "refine needs a held-out set to judge the refined model: give the original "
            "training data (--data) or a held-out table (--holdout)"
        )
    if tolerance < 0:
        raise ConfigError(f"tolerance must be ≥ 0, got {tolerance}")
    if replay is not None and replay < 0:
        raise ConfigError(f"replay must be ≥ 0 rows, got {replay}")
    root = Path(model_dir)
    old_dir = resolve_model_dir(root)  # read `current` once: a concurrent promote can't mix
    parent = current_version(old_dir)
    old = FusionPredictor.load(old_dir, device=device)
    pre, label = old.preprocessor_, next(iter(old.preprocessor_.labels))
    feedback = _feedback_table(store_or_frame, old, label)
    train, held, n_replay = _training_tables(old, feedback, data, holdout, replay, seed)
    with tempfile.TemporaryDirectory(prefix="crossfuse-refine-") as logs:
        model, fit, new_lr = _fine_tune(old, train, held, epochs, lr, seed, device, Path(logs))
        scores = {
            who: {
                part: evaluate_model(m, pre, t)
                for part, t in (("holdout", held), ("feedback", feedback))
            }
            for who, m in (("old", old.model_), ("new", model))
        }
        n, folder = new_version_dir(root)
        meta = json.loads((old_dir / META_FILE).read_text())
        meta = {k: v for k, v in meta.items() if k not in ("format_version", "crossfuse_version")}
        sizes = {"feedback_rows": len(feedback), "replay_rows": n_replay, "holdout_rows": len(held)}
        meta["train_fingerprint"] = fingerprint(train.df)
        meta["fit_summary"] = {
            "refined_from": parent,
            **{k: getattr(fit, k) for k in ("epochs", "best_epoch", "monitor", "best_score")},
            "train_seconds": round(fit.seconds, 2),
            "train_rows": len(train),
            "valid_rows": len(held),
            "lr": new_lr,
            "history": fit.history,
            **sizes,
        }
        write_model_dir(
            folder,
            meta=meta,
            state_dict=model.state_dict(),
            metrics={"valid": scores["new"]["holdout"], "feedback": scores["new"]["feedback"]},
            tensorboard=Path(logs) / TB_DIR,
        )
    name, mode = primary_metric(str(pre.labels[label].task))
    old_value, new_value = (scores[w]["holdout"]["tasks"][label][name] for w in ("old", "new"))
    ok, reason = _judge(name, mode, old_value, new_value, tolerance, parent, n)
    summary = {who: {k: metrics_summary(v) for k, v in s.items()} for who, s in scores.items()}
    settings = {"epochs": epochs, "lr": new_lr, "tolerance": tolerance, "seed": seed, **sizes}
    record(
        root,
        {
            "version": n,
            "parent": parent,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "promoted": False,
            "reason": reason,
            "metrics": summary,
            "refine": settings,
        },
    )
    if ok:
        promote(root, n, reason, summary)
    if out is not None:
        shutil.copytree(folder, Path(out), dirs_exist_ok=True)
    return RefineResult(
        version=n,
        parent=parent,
        promoted=ok,
        reason=reason,
        current=current_version(root),
        model_dir=folder,
        metric=name,
        metrics=summary,
        **sizes,
    )


def _training_tables(
    old: FusionPredictor,
    feedback: Table,
    data: TableLike | None,
    holdout: TableLike | None,
    replay: int | None,
    seed: int,
) -> tuple[Table, Table, int]:
    """(feedback + replay sample, held-out table, replay rows)."""
    if data is None:
        return Table(feedback.df, None, "refine (feedback)"), read_table(holdout), 0
    data_table = read_table(data)
    if holdout is not None:
        pool, held = data_table, read_table(holdout)
    else:  # the held-out part is never replayed
        pool, held = split_train_valid(data_table, old.schema_, HOLDOUT_FRACTION, seed)
    size = max(REPLAY_PER_FEEDBACK * len(feedback), MIN_REPLAY) if replay is None else replay
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(pool), size=min(size, len(pool)), replace=False))
    replay_df = _model_frame(_absolute_media(pool, old), old).iloc[rows]
    train_df = pd.concat([feedback.df, replay_df], ignore_index=True)
    return Table(train_df, None, "refine (feedback + replay)"), held, len(rows)


def _fine_tune(
    old: FusionPredictor,
    train: Table,
    held: Table,
    epochs: int,
    lr: float | None,
    seed: int,
    device: str,
    logs: Path,
) -> tuple[FusionModel, FitResult, float]:
    """Train a copy of the live model (same fitted preprocessing) at a lower LR."""
    import lightning.pytorch as pl

    base = old.config_.train
    new_lr = base.lr * LR_FACTOR if lr is None else lr
    config = dataclasses.replace(
        base,
        epochs=epochs,
        lr=new_lr,
        encoder_lr=None if base.encoder_lr is None else base.encoder_lr * new_lr / base.lr,
        patience=0,
        time_limit=None,
        seed=seed,
    )
    model = copy.deepcopy(old.model_)
    pl.seed_everything(seed, workers=True, verbose=False)
    fit = fit_model(
        model,
        old.preprocessor_,
        train,
        held,
        config,
        log_dir=logs / TB_DIR,
        progress=False,
        strict=old.config_.data.strict,
        device=resolve_device(device),
    )
    return model, fit, new_lr


def _judge(
    name: str, mode: str, old: float, new: float, tolerance: float, parent: int, n: int
) -> tuple[bool, str]:
    """Promote unless the held-out metric got worse by more than ``tolerance``."""
    worse_by = (old - new) if mode == "max" else (new - old)
    numbers = (
        f"held-out {name} {new:.4f} (candidate version {n}) vs {old:.4f} (version {parent}), "
        f"tolerance {tolerance}"
    )
    if worse_by <= tolerance:
        return True, f"promoted: {numbers}"
    direction = "fell" if mode == "max" else "rose"
    return False, f"not promoted: {name} {direction} by {worse_by:.4f}; {numbers}"


def _feedback_table(source: FeedbackSource, old: FusionPredictor, label: str) -> Table:
    """Feedback rows as a trainable table in the model's columns (media paths absolute)."""
    if isinstance(source, str | Path) and Path(source).suffix.lower() in _DB_SUFFIXES:
        if not Path(source).is_file():
            raise ConfigError(f"feedback database {source} not found")
        source = FeedbackStore(source)
    if isinstance(source, FeedbackStore):
        frame = source.to_frame(label_column=label)
    else:
        table = read_table(source)
        frame = _absolute_media(table, old)
        if label not in frame.columns and "label" in frame.columns:
            frame = frame.rename(columns={"label": label})
    if label not in frame.columns:
        raise ConfigError(f"the feedback has no {label!r} (or 'label') column of corrected labels")
    if frame.empty:
        raise ConfigError("there is no feedback to refine on (the feedback store is empty)")
    unlabelled = [i for i, v in enumerate(frame[label]) if is_missing(v)]
    if unlabelled:
        raise ConfigError(
            f"{len(unlabelled)} feedback row(s) have no label, e.g. row {unlabelled[0]}"
        )
    enc = old.preprocessor_.labels[label]
    bad = []
    for value in frame[label]:
        try:
            enc.encode(value)
        except CellError:
            bad.append(value)
    if bad:
        if enc.task == "classification":
            raise ConfigError(
                f"feedback labels {sorted({str(v) for v in bad})} are not among the model's "
                f"classes {[str(c) for c in enc.classes]} (a refined model cannot add "
                "classes; retrain it with `crossfuse train` instead)"
            )
        raise ConfigError(f"feedback labels {sorted({str(v) for v in bad})} are not numbers")
    return Table(_model_frame(frame, old), None, "feedback")


def _model_frame(frame: pd.DataFrame, old: FusionPredictor) -> pd.DataFrame:
    """Just the columns the model reads (inputs and labels); absent ones are empty."""
    pre = old.preprocessor_
    columns = [*pre.columns, *(pre.tabular.columns if pre.tabular else []), *pre.labels]
    return pd.DataFrame(
        {c: list(frame[c]) if c in frame.columns else [None] * len(frame) for c in columns}
    )


def _absolute_media(table: Table, old: FusionPredictor) -> pd.DataFrame:
    """The table's frame with relative image/audio paths made absolute (to merge tables)."""
    df = table.df.copy()
    if table.base_dir is None:
        return df
    for col, modality in old.preprocessor_.inputs.items():
        if modality in ("image", "audio") and col in df.columns:
            df[col] = df[col].map(lambda c: _absolute(c, Path(table.base_dir)))
    return df


def _absolute(cell: Any, base: Path) -> Any:
    if isinstance(cell, str) and cell.strip() and not Path(cell.strip()).expanduser().is_absolute():
        return str(base / cell.strip())
    return cell
