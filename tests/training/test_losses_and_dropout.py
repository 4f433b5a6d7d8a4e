import math

import torch

from crossfuse.training.losses import balanced_class_weights, classification_loss, regression_loss
from crossfuse.training.modality_dropout import drop_modalities


def test_classification_loss_ignores_rows_without_label() -> None:
    logits = torch.tensor([[0.0, 0.0], [5.0, -5.0], [1.0, 1.0]], requires_grad=True)
    target = torch.tensor([0, -100, 1])
    present = torch.tensor([True, False, True])
    loss = classification_loss(logits, target, present)
    assert math.isclose(loss.item(), math.log(2), rel_tol=1e-6)
    none = classification_loss(logits, target, torch.zeros(3, dtype=torch.bool))
    assert none.item() == 0.0
    none.backward()  # still has a graph


def test_regression_loss_known_values() -> None:
    pred = torch.tensor([[1.0], [2.0], [9.0]])
    target = torch.tensor([1.0, 4.0, float("nan")])
    present = torch.tensor([True, True, False])
    assert regression_loss(pred, target, present).item() == 2.0  # (0 + 4) / 2
    assert math.isclose(regression_loss(pred, target, present, kind="huber").item(), 0.75)


def test_balanced_class_weights() -> None:
    w = balanced_class_weights(torch.tensor([30.0, 10.0]))
    torch.testing.assert_close(w, torch.tensor([40 / 60, 40 / 20]))


def test_modality_dropout_never_empties_a_row() -> None:
    g = torch.Generator().manual_seed(0)
    present = {
        "a": torch.ones(2000, dtype=torch.bool),
        "b": torch.tensor([True, False] * 1000),
    }
    kept = drop_modalities(present, 0.5, g)
    stacked = torch.stack([kept["a"], kept["b"]], 1)
    assert stacked.any(1).all()  # every row keeps an input
    assert not (kept["b"] & ~present["b"]).any()  # absent stays absent
    rate = 1 - kept["a"][1::2].float().mean().item()  # rows where "a" is the only input
    assert rate == 0.0
    drop_rate = 1 - kept["b"][0::2].float().mean().item()
    assert 0.2 < drop_rate < 0.3  # dropped alone: 0.5 × 0.5 (both dropped → row restored)
    assert drop_modalities(present, 0.0) is present
