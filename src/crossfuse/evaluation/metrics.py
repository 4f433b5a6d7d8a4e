"""Classification and regression metrics as plain, JSON-serialisable dicts.

Pure functions: tensors or numpy arrays in, ``dict`` of floats / ints / lists out, so the
result can be logged, written to ``metrics.json`` or compared across runs directly.

Conventions (chosen so that no field is ever NaN or infinite):

* Predictions are the arg-max of ``probs`` (first index wins a tie). Binary problems
  (C=2) use the same multiclass formulas: ``precision_macro`` averages both classes,
  there is no "positive class".
* A per-class precision / recall / F1 whose denominator is 0 is 0 (``zero_division=0``).
* Macro averages follow torchmetrics: a class absent from ``target`` *and* never
  predicted (tp + fp + fn = 0) is left out of the macro mean. A class that is predicted
  but absent from ``target`` stays in (with recall 0). Weighted averages weight by
  support, so absent classes never count there.
* ``balanced_accuracy`` is the mean recall over the classes present in ``target``
  (as scikit-learn's ``balanced_accuracy_score``).
* ``r2`` is computed here in float64, not with torchmetrics' ``r2_score``, whose
  absolute ``1e-4`` tolerance misreports small-scale targets (e.g. values ~1e-3). It
  follows scikit-learn's ``force_finite`` rule: a constant target gives 1.0 for a
  perfect prediction and 0.0 otherwise (this also covers N=1).
* ``pearson`` is 0.0 when either input is constant (the correlation is undefined).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from crossfuse.errors import ConfigError

# torchmetrics is imported where it is used: importing it costs about 1.6 s (it pulls
# in transformers), which every `crossfuse` command would otherwise pay at start-up.

ArrayLike = torch.Tensor | np.ndarray
LOG_LOSS_EPS = 1e-15
_PROB_TOLERANCE = 1e-4
_PRIMARY_METRIC: dict[str, tuple[str, str]] = {
    "classification": ("accuracy", "max"),
    "regression": ("rmse", "min"),
}


def primary_metric(task: str) -> tuple[str, str]:
    """Return the default ``(metric name, mode)`` for early stopping / model selection.

    ``mode`` is ``"max"`` when larger is better and ``"min"`` otherwise.
    """
    if task not in _PRIMARY_METRIC:
        raise ConfigError(f"unknown task {task!r}; expected one of {sorted(_PRIMARY_METRIC)}")
    return _PRIMARY_METRIC[task]


def classification_metrics(
    probs: ArrayLike, target: ArrayLike, classes: Sequence[Any]
) -> dict[str, Any]:
    """Score class probabilities ``probs`` (N, C) against integer labels ``target`` (N,).

    ``classes`` names the C columns of ``probs`` (and the label ids 0..C-1); its order
    is the order of ``per_class`` and of the confusion matrix rows (true) and columns
    (predicted). See the module docstring for the averaging conventions.
    """
    from torchmetrics.functional.classification import (
        multiclass_accuracy,
        multiclass_confusion_matrix,
        multiclass_f1_score,
        multiclass_precision,
        multiclass_recall,
    )

    probs_t, target_t, names = _classification_inputs(probs, target, classes)
    num_classes = len(names)
    preds = probs_t.argmax(dim=1)  # (N,)
    kw: dict[str, Any] = {"num_classes": num_classes, "validate_args": False}
    scores = {"zero_division": 0.0, **kw}

    per_class_p = multiclass_precision(preds, target_t, average="none", **scores)  # (C,)
    per_class_r = multiclass_recall(preds, target_t, average="none", **scores)  # (C,)
    per_class_f = multiclass_f1_score(preds, target_t, average="none", **scores)  # (C,)
    support = torch.bincount(target_t, minlength=num_classes)  # (C,)
    confusion = multiclass_confusion_matrix(preds, target_t, **kw)  # (C, C)

    p_true = probs_t.gather(1, target_t[:, None]).squeeze(1)  # (N,)
    log_loss = -torch.log(p_true.clamp(LOG_LOSS_EPS, 1.0)).mean()

    result: dict[str, Any] = {
        "accuracy": multiclass_accuracy(preds, target_t, average="micro", **kw),
        "balanced_accuracy": per_class_r[support > 0].mean(),
    }
    for average in ("macro", "weighted"):
        result[f"precision_{average}"] = multiclass_precision(
            preds, target_t, average=average, **scores
        )
        result[f"recall_{average}"] = multiclass_recall(preds, target_t, average=average, **scores)
        result[f"f1_{average}"] = multiclass_f1_score(preds, target_t, average=average, **scores)
    result["log_loss"] = log_loss
    result = {key: float(value) for key, value in result.items()}
    result["per_class"] = {
        name: {
            "precision": float(per_class_p[i]),
            "recall": float(per_class_r[i]),
            "f1": float(per_class_f[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(names)
    }
    result["confusion_matrix"] = confusion.tolist()
    result["n"] = int(target_t.shape[0])
    return result


def regression_metrics(pred: ArrayLike, target: ArrayLike) -> dict[str, Any]:
    """Score predictions ``pred`` (N,) against ``target`` (N,); (N, 1) is also accepted.

    Returns ``mse``, ``rmse``, ``mae``, ``r2``, ``pearson`` (floats) and ``n``. Computed
    in float64; constant inputs never raise (see the module docstring).
    """
    from torchmetrics.functional.regression import mean_absolute_error, mean_squared_error

    pred_t = _as_vector(pred, "pred")
    target_t = _as_vector(target, "target")
    if pred_t.shape != target_t.shape:
        raise ConfigError(
            f"pred and target must have the same length, got {pred_t.shape[0]} "
            f"and {target_t.shape[0]}"
        )
    mse = float(mean_squared_error(pred_t, target_t))
    return {
        "mse": mse,
        "rmse": math.sqrt(mse),
        "mae": float(mean_absolute_error(pred_t, target_t)),
        "r2": _r2(pred_t, target_t),
        "pearson": _pearson(pred_t, target_t),
        "n": int(target_t.shape[0]),
    }


def _r2(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Coefficient of determination with scikit-learn's ``force_finite`` rule.

    Constancy is tested exactly: the mean of e.g. three 0.1s is not exactly 0.1, so a
    variance test would divide by ~1e-34 (scikit-learn then reports about -1e33).
    """
    if _is_constant(target):
        return 1.0 if bool((pred == target).all()) else 0.0
    ss_res = float(((target - pred) ** 2).sum())
    ss_tot = float(((target - target.mean()) ** 2).sum())
    return 1.0 - ss_res / ss_tot


def _pearson(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Pearson correlation, 0.0 when either side is constant (undefined correlation)."""
    if _is_constant(pred) or _is_constant(target):
        return 0.0
    from torchmetrics.functional.regression import pearson_corrcoef

    value = float(pearson_corrcoef(pred, target))
    return value if math.isfinite(value) else 0.0


def _is_constant(x: torch.Tensor) -> bool:
    """True when every element of the (N,) tensor equals the first."""
    return bool((x == x[0]).all())


def _to_tensor(x: ArrayLike, name: str) -> torch.Tensor:
    """A detached CPU tensor from a tensor or numpy array."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if isinstance(x, np.ndarray) and x.dtype.kind in "biuf":
        return torch.from_numpy(np.ascontiguousarray(x))
    raise ConfigError(f"{name} must be a torch tensor or a numeric numpy array, got {type(x)}")


def _as_vector(x: ArrayLike, name: str) -> torch.Tensor:
    """Validate a regression input and return it as a float64 (N,) tensor."""
    t = _to_tensor(x, name)
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]  # (N, 1) -> (N,)
    if t.ndim != 1 or t.shape[0] == 0:
        raise ConfigError(f"{name} must be a non-empty (N,) array, got shape {tuple(t.shape)}")
    t = t.to(torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise ConfigError(f"{name} contains NaN or infinite values")
    return t


def _classification_inputs(
    probs: ArrayLike, target: ArrayLike, classes: Sequence[Any]
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Validate classification inputs; return float64 probs, int64 target, class names."""
    probs_t = _to_tensor(probs, "probs")
    target_t = _to_tensor(target, "target")
    names = [str(c) for c in classes]
    if probs_t.ndim != 2 or not probs_t.is_floating_point():
        raise ConfigError(
            f"probs must be a float (N, C) array, got {probs_t.dtype} "
            f"of shape {tuple(probs_t.shape)}"
        )
    if target_t.ndim != 1 or target_t.is_floating_point() or target_t.dtype == torch.bool:
        raise ConfigError(
            f"target must be an integer (N,) array, got {target_t.dtype} "
            f"of shape {tuple(target_t.shape)}"
        )
    n, num_classes = probs_t.shape
    if n == 0 or target_t.shape[0] != n:
        raise ConfigError(
            f"probs has {n} rows and target has {target_t.shape[0]}; "
            "they must be equal and non-zero"
        )
    if len(names) != num_classes or num_classes < 2:
        raise ConfigError(
            f"need at least 2 classes, one per probs column; got "
            f"{len(names)} class names for {num_classes} columns"
        )
    if len(set(names)) != len(names):
        raise ConfigError(f"class names must be unique, got {names}")
    probs_t = probs_t.to(torch.float64)
    if not bool(torch.isfinite(probs_t).all()):
        raise ConfigError("probs contains NaN or infinite values")
    if float(probs_t.min()) < 0.0 or float(probs_t.max()) > 1.0 + _PROB_TOLERANCE:
        raise ConfigError("probs must lie in [0, 1] (pass probabilities, not logits)")
    target_t = target_t.to(torch.int64)
    if int(target_t.min()) < 0 or int(target_t.max()) >= num_classes:
        raise ConfigError(
            f"target labels must be in [0, {num_classes - 1}], got range "
            f"[{int(target_t.min())}, {int(target_t.max())}]"
        )
    return probs_t, target_t, names
