"""Tests for crossfuse.evaluation.metrics: hand-computed values and scikit-learn parity."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr
from sklearn import metrics as skm

from crossfuse.errors import ConfigError
from crossfuse.evaluation import classification_metrics, primary_metric, regression_metrics

SCALAR_KEYS = [
    "accuracy",
    "balanced_accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "precision_weighted",
    "recall_weighted",
    "f1_weighted",
    "log_loss",
]

# 6 rows, 3 classes. target = [0,0,0,1,1,2]; arg-max predictions = [0,0,1,1,2,2].
HAND_PROBS = torch.tensor(
    [
        [0.7, 0.2, 0.1],
        [0.5, 0.3, 0.2],
        [0.2, 0.6, 0.2],
        [0.1, 0.8, 0.1],
        [0.1, 0.4, 0.5],
        [0.25, 0.25, 0.5],
    ]
)
HAND_TARGET = torch.tensor([0, 0, 0, 1, 1, 2])
HAND_CLASSES = ["cat", "dog", "bird"]


def approx(value: float) -> object:
    return pytest.approx(value, abs=1e-6)


def assert_strict_json(result: dict) -> None:
    """The result survives a strict (no NaN / inf) JSON round trip unchanged."""
    assert json.loads(json.dumps(result, allow_nan=False)) == result


def random_problem(seed: int, n: int = 40, c: int = 5, present: int = 4, drop_last: bool = False):
    """Softmax probs over ``c`` classes; labels drawn only from the first ``present``.

    With ``drop_last`` the last class gets probability 0, so it is never predicted.
    """
    g = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(n, c, generator=g, dtype=torch.float64)  # (N, C)
    if drop_last:
        logits[:, -1] = -math.inf
    probs = torch.softmax(logits, dim=1)  # (N, C)
    target = torch.randint(0, present, (n,), generator=g)  # (N,)
    return probs, target


def test_hand_computed_three_classes() -> None:
    r = classification_metrics(HAND_PROBS, HAND_TARGET, HAND_CLASSES)
    assert r["n"] == 6
    assert r["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert r["per_class"] == {
        "cat": {"precision": approx(1.0), "recall": approx(2 / 3), "f1": approx(0.8), "support": 3},
        "dog": {"precision": approx(0.5), "recall": approx(0.5), "f1": approx(0.5), "support": 2},
        "bird": {
            "precision": approx(0.5),
            "recall": approx(1.0),
            "f1": approx(2 / 3),
            "support": 1,
        },
    }
    assert list(r["per_class"]) == HAND_CLASSES
    assert r["accuracy"] == approx(4 / 6)
    assert r["balanced_accuracy"] == approx(13 / 18)
    assert r["precision_macro"] == approx(2 / 3)
    assert r["recall_macro"] == approx(13 / 18)
    assert r["f1_macro"] == approx(59 / 90)
    assert r["precision_weighted"] == approx(0.75)
    assert r["recall_weighted"] == approx(4 / 6)
    assert r["f1_weighted"] == approx(61 / 90)
    expected_log_loss = -np.mean(np.log([0.7, 0.5, 0.2, 0.8, 0.4, 0.5]))
    assert r["log_loss"] == approx(expected_log_loss)
    assert_strict_json(r)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("drop_last", [False, True])  # class "e": predicted / never predicted
def test_classification_matches_sklearn(seed: int, drop_last: bool) -> None:
    probs, target = random_problem(seed, drop_last=drop_last)
    assert bool((probs.argmax(1) == 4).any()) != drop_last
    r = classification_metrics(probs, target, ["a", "b", "c", "d", "e"])
    y, p = target.numpy(), probs.argmax(1).numpy()
    labels = list(range(5))
    # torchmetrics' macro convention: only classes seen in target or predictions count.
    seen = sorted(set(y) | set(p))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about predicted-but-absent classes
        assert r["balanced_accuracy"] == approx(skm.balanced_accuracy_score(y, p))
    assert r["accuracy"] == approx(skm.accuracy_score(y, p))
    for average, subset in (("macro", seen), ("weighted", labels)):
        prec, rec, f1, _ = skm.precision_recall_fscore_support(
            y, p, labels=subset, average=average, zero_division=0
        )
        assert r[f"precision_{average}"] == approx(prec)
        assert r[f"recall_{average}"] == approx(rec)
        assert r[f"f1_{average}"] == approx(f1)
    prec, rec, f1, support = skm.precision_recall_fscore_support(
        y, p, labels=labels, average=None, zero_division=0
    )
    for i, name in enumerate("abcde"):
        assert r["per_class"][name] == {
            "precision": approx(prec[i]),
            "recall": approx(rec[i]),
            "f1": approx(f1[i]),
            "support": int(support[i]),
        }
    assert r["confusion_matrix"] == skm.confusion_matrix(y, p, labels=labels).tolist()
    assert r["log_loss"] == approx(skm.log_loss(y, probs.numpy(), labels=labels))
    assert_strict_json(r)


def test_binary_uses_multiclass_formulas() -> None:
    # target = [0,0,1,1,1]; predictions = [0,1,1,1,0]
    probs = torch.tensor(
        [[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]], dtype=torch.float64
    )
    target = torch.tensor([0, 0, 1, 1, 1])
    r = classification_metrics(probs, target, ["no", "yes"])
    assert r["confusion_matrix"] == [[1, 1], [1, 2]]
    assert r["per_class"]["no"]["precision"] == approx(0.5)
    assert r["per_class"]["yes"]["precision"] == approx(2 / 3)
    assert r["precision_macro"] == approx((0.5 + 2 / 3) / 2)  # both classes, no "positive"
    assert r["recall_macro"] == approx((0.5 + 2 / 3) / 2)
    assert r["accuracy"] == approx(0.6)
    y, p = target.numpy(), probs.argmax(1).numpy()
    assert r["f1_macro"] == approx(skm.f1_score(y, p, average="macro"))
    assert r["f1_weighted"] == approx(skm.f1_score(y, p, average="weighted"))
    assert r["log_loss"] == approx(skm.log_loss(y, probs.numpy()))


def test_class_never_predicted_counts_as_zero_in_macro() -> None:
    # class 2 is in target but never predicted: precision 0/0 -> 0, recall 0, kept in macro.
    probs = torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.6, 0.3], [0.7, 0.2, 0.1]])
    target = torch.tensor([0, 1, 2, 0])
    r = classification_metrics(probs, target, ["a", "b", "c"])
    assert r["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert r["precision_macro"] == approx((1.0 + 0.5 + 0.0) / 3)
    assert r["recall_macro"] == approx((1.0 + 1.0 + 0.0) / 3)
    assert r["balanced_accuracy"] == approx(2 / 3)
    assert_strict_json(r)


def test_class_absent_and_never_predicted_is_left_out_of_macro() -> None:
    # class "c" never occurs and is never predicted: zeros, not NaN, and not in the macro mean.
    probs = torch.tensor([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.3, 0.6, 0.1]])
    target = torch.tensor([0, 1, 1, 1])  # predictions = [0, 1, 0, 1]
    r = classification_metrics(probs, target, ["a", "b", "c"])
    assert r["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert r["precision_macro"] == approx((0.5 + 1.0) / 2)
    assert r["recall_macro"] == approx((1.0 + 2 / 3) / 2)
    assert r["f1_macro"] == approx((2 / 3 + 0.8) / 2)
    assert r["balanced_accuracy"] == approx((1.0 + 2 / 3) / 2)
    assert r["confusion_matrix"][2] == [0, 0, 0]
    assert_strict_json(r)


def test_class_predicted_but_absent_stays_in_macro_not_in_balanced_accuracy() -> None:
    probs = torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1]])
    target = torch.tensor([0, 0, 1])  # predictions = [0, 2, 1]; class 2 never true
    r = classification_metrics(probs, target, ["a", "b", "c"])
    assert r["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert r["recall_macro"] == approx((0.5 + 1.0 + 0.0) / 3)
    assert r["balanced_accuracy"] == approx((0.5 + 1.0) / 2)


def test_log_loss_clips_zero_probability() -> None:
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    r = classification_metrics(probs, torch.tensor([1, 1]), [0, 1])
    assert r["log_loss"] == approx(-math.log(1e-15) / 2)
    assert set(r["per_class"]) == {"0", "1"}  # non-string class names become strings
    assert_strict_json(r)


def test_numpy_inputs_match_torch_inputs() -> None:
    probs, target = random_problem(7, n=20, c=3, present=3)
    from_torch = classification_metrics(probs, target, ["x", "y", "z"])
    from_numpy = classification_metrics(probs.numpy(), target.numpy(), ["x", "y", "z"])
    assert from_numpy == from_torch
    assert set(SCALAR_KEYS) <= set(from_torch)


@pytest.mark.parametrize(
    ("probs", "target", "classes", "message"),
    [
        (torch.full((3, 2), 0.5), torch.tensor([0, 1, 0]), ["a"], "class names"),
        (torch.full((3, 1), 1.0), torch.tensor([0, 0, 0]), ["a"], "at least 2"),
        (torch.full((3, 2), 0.5), torch.tensor([0, 2, 0]), ["a", "b"], "labels must be in"),
        (torch.full((3, 2), 0.5), torch.tensor([0, -1, 0]), ["a", "b"], "labels must be in"),
        (torch.full((3, 2), 0.5), torch.tensor([0, 1]), ["a", "b"], "rows"),
        (torch.full((0, 2), 0.5), torch.zeros(0, dtype=torch.long), ["a", "b"], "non-zero"),
        (torch.full((3, 2), 0.5), torch.tensor([0.0, 1.0, 0.0]), ["a", "b"], "integer"),
        (torch.full((3,), 0.5), torch.tensor([0, 1, 0]), ["a", "b"], r"\(N, C\)"),
        (torch.tensor([[2.0, -1.0]]), torch.tensor([0]), ["a", "b"], "logits"),
        (torch.tensor([[float("nan"), 0.5]]), torch.tensor([0]), ["a", "b"], "NaN"),
        (torch.full((3, 2), 0.5), torch.tensor([0, 1, 0]), ["a", "a"], "unique"),
        ([[0.5, 0.5]], torch.tensor([0]), ["a", "b"], "torch tensor or"),
    ],
)
def test_classification_rejects_bad_input(probs, target, classes, message) -> None:
    with pytest.raises(ConfigError, match=message):
        classification_metrics(probs, target, classes)


def test_regression_hand_computed() -> None:
    r = regression_metrics(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 2.0, 4.0]))
    assert r["n"] == 3
    assert r["mse"] == approx(1 / 3)
    assert r["rmse"] == approx(math.sqrt(1 / 3))
    assert r["mae"] == approx(1 / 3)
    assert r["r2"] == approx(11 / 14)
    assert r["pearson"] == approx(3 / math.sqrt(2 * 14 / 3))
    assert_strict_json(r)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("scale", [1.0, 1e-3])  # small scale: torchmetrics' r2 would say 1.0
def test_regression_matches_sklearn_and_scipy(seed: int, scale: float) -> None:
    rng = np.random.default_rng(seed)
    target = rng.normal(size=25) * scale
    pred = target + rng.normal(size=25) * 0.5 * scale
    r = regression_metrics(pred.astype(np.float32), torch.from_numpy(target))
    p32 = pred.astype(np.float32).astype(np.float64)
    tol = {"rel": 1e-9, "abs": 1e-12}
    assert r["mse"] == pytest.approx(skm.mean_squared_error(target, p32), **tol)
    assert r["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(target, p32)), **tol)
    assert r["mae"] == pytest.approx(skm.mean_absolute_error(target, p32), **tol)
    assert r["r2"] == pytest.approx(skm.r2_score(target, p32), **tol)
    assert r["pearson"] == pytest.approx(pearsonr(p32, target).statistic, rel=1e-9)
    assert r["r2"] < 0.99
    assert_strict_json(r)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize(
    ("pred", "target", "r2"),
    [
        ([2.0, 2.0, 2.0], [1.0, 2.0, 3.0], 0.0),  # constant prediction at the mean
        ([1.0, 2.0, 3.0], [2.0, 2.0, 2.0], 0.0),  # constant target, imperfect
        ([2.0, 2.0, 2.0], [2.0, 2.0, 2.0], 1.0),  # constant target, perfect
        ([5.0], [3.0], 0.0),  # a single row
        ([0.2, 0.1, 0.0], [0.1, 0.1, 0.1], 0.0),  # mean(0.1s) != 0.1; sklearn says ~-1e33
    ],
)
def test_regression_constant_inputs(pred, target, r2) -> None:
    r = regression_metrics(torch.tensor(pred), torch.tensor(target))
    assert r["pearson"] == 0.0
    assert r["r2"] == approx(r2)
    if len(pred) > 1 and 0.1 not in target:
        assert r["r2"] == approx(skm.r2_score(target, pred))
    assert_strict_json(r)


def test_regression_accepts_column_vectors_and_grad_tensors() -> None:
    pred = torch.tensor([[1.0], [2.0], [3.0]], requires_grad=True)  # (N, 1) model output
    r = regression_metrics(pred, np.array([1, 2, 4]))
    assert r["mse"] == approx(1 / 3)
    assert r["n"] == 3


@pytest.mark.parametrize(
    ("pred", "target", "message"),
    [
        (torch.zeros(3), torch.zeros(4), "same length"),
        (torch.zeros(0), torch.zeros(0), "non-empty"),
        (torch.zeros(3, 2), torch.zeros(3, 2), "non-empty"),
        (torch.tensor([1.0, float("inf")]), torch.zeros(2), "NaN or infinite"),
        (np.array(["a", "b"]), torch.zeros(2), "numeric"),
    ],
)
def test_regression_rejects_bad_input(pred, target, message) -> None:
    with pytest.raises(ConfigError, match=message):
        regression_metrics(pred, target)


def test_primary_metric_names_a_reported_metric() -> None:
    assert primary_metric("classification") == ("accuracy", "max")
    assert primary_metric("regression") == ("rmse", "min")
    cls = classification_metrics(HAND_PROBS, HAND_TARGET, HAND_CLASSES)
    reg = regression_metrics(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 3.0]))
    assert primary_metric("classification")[0] in cls
    assert primary_metric("regression")[0] in reg
    with pytest.raises(ConfigError, match="unknown task"):
        primary_metric("ranking")
