"""Weighted-average fusion: masking, fixed and learned weights, gradients, learnability."""

from __future__ import annotations

import pytest
import torch

from crossfuse.encoders.base import ModalityOutput
from crossfuse.fusion.weighted import WeightedFusion
from tests.fusion.helpers import PRESENT, WIDTHS, WithHead, make_outputs, with_pooled
from tests.fusion.helpers import fit_accuracy as shared_fit_accuracy

assert_close = torch.testing.assert_close

FIXED = {"text": 0.5, "image": 0.3, "audio": 0.2}


def build(weights: dict[str, float] | None = None, hidden: int = 16) -> WeightedFusion:
    torch.manual_seed(0)
    return WeightedFusion(in_dims=WIDTHS, hidden=hidden, out_dims={"y": 2}, weights=weights)


@pytest.mark.parametrize("weights", [None, FIXED])
def test_output_shape(weights: dict[str, float] | None) -> None:
    fusion = build(weights, hidden=16)
    out = fusion(make_outputs(WIDTHS, PRESENT))
    assert fusion.out_dim == 16
    assert out.shape == (6, 16)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("weights", [None, FIXED])
def test_absent_rows_ignore_their_values(weights: dict[str, float] | None) -> None:
    fusion = build(weights).eval()
    outputs = make_outputs(WIDTHS, PRESENT)
    base = fusion(outputs)
    for name in WIDTHS:
        absent = ~outputs[name].present
        for value in (1e6, float("nan"), float("inf")):
            out = fusion(with_pooled(outputs, name, absent, value))
            assert torch.equal(out, base), (name, value)
        present = outputs[name].present
        out = fusion(with_pooled(outputs, name, present, 3.0))
        assert not torch.equal(out[present], base[present])
        assert torch.equal(out[~present], base[~present])


@pytest.mark.parametrize("weights", [None, FIXED])
def test_all_absent_rows_get_the_empty_vector(weights: dict[str, float] | None) -> None:
    fusion = build(weights)
    out = fusion(make_outputs(WIDTHS, PRESENT))
    for row in (3, 5):
        assert torch.isfinite(out[row]).all()
        assert_close(out[row], fusion.empty.detach())
    assert not torch.equal(out[4], fusion.empty.detach())


def test_rows_do_not_depend_on_other_rows() -> None:
    fusion = build().eval()
    outputs = make_outputs(WIDTHS, PRESENT)
    full = fusion(outputs)
    for i in range(6):
        one = {
            n: ModalityOutput(o.pooled[i : i + 1], o.present[i : i + 1]) for n, o in outputs.items()
        }
        assert_close(fusion(one)[0], full[i])


def test_fixed_weights_equal_hand_computed_average() -> None:
    fusion = build(FIXED)
    outputs = make_outputs(WIDTHS, PRESENT)
    out = fusion(outputs)
    names = sorted(WIDTHS)
    for row in (0, 1, 2, 4):
        num, den = torch.zeros(16), 0.0
        for i, n in enumerate(names):
            if PRESENT[n][row]:
                h = fusion.proj[i](outputs[n].pooled[row])  # this input's own projection
                num, den = num + FIXED[n] * h, den + FIXED[n]
        assert_close(out[row], num / den)


def test_fixed_weights_renormalise_over_present_inputs() -> None:
    fusion = build(FIXED)
    w = fusion.modality_weights(make_outputs(WIDTHS, PRESENT))
    assert_close(w["text"], torch.tensor([0.5, 0.5 / 0.7, 0.5 / 0.8, 0.0, 0.0, 0.0]))
    assert_close(w["image"], torch.tensor([0.3, 0.0, 0.3 / 0.8, 0.0, 0.0, 0.0]))
    assert_close(w["audio"], torch.tensor([0.2, 0.2 / 0.7, 0.0, 0.0, 1.0, 0.0]))


def test_zero_fixed_weight_alone_counts_as_empty() -> None:
    fusion = WeightedFusion(in_dims=WIDTHS, hidden=16, out_dims={}, weights={**FIXED, "audio": 0})
    out = fusion(make_outputs(WIDTHS, PRESENT))
    assert_close(out[4], fusion.empty.detach())  # row 4 has only audio, whose weight is 0


def test_learned_weights_start_equal_and_sum_to_one_over_present() -> None:
    fusion = build()
    outputs = make_outputs(WIDTHS, PRESENT)
    w = fusion.modality_weights(outputs)
    assert_close(w["text"][0], torch.tensor(1 / 3))
    with torch.no_grad():
        fusion.logits.copy_(torch.tensor([0.3, -1.2, 2.0]))
    w = fusion.modality_weights(outputs)
    total = sum(w.values())
    assert_close(total, torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.0]))
    for n in WIDTHS:
        assert (w[n][~outputs[n].present] == 0).all()
        assert (w[n][outputs[n].present] > 0).all()


@pytest.mark.parametrize("weights", [None, FIXED])
def test_gradients_finite_with_absent_inputs(weights: dict[str, float] | None) -> None:
    fusion = build(weights)
    outputs = make_outputs(WIDTHS, PRESENT)
    for n, o in outputs.items():  # NaN in every absent row, gradients wanted on the inputs
        pooled = o.pooled.masked_fill(~o.present[:, None], float("nan")).requires_grad_()
        outputs[n] = ModalityOutput(pooled, o.present)
    fusion(outputs).pow(2).sum().backward()
    for name, p in fusion.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert fusion.empty.grad.abs().sum() > 0
    if weights is None:
        assert fusion.logits.grad.abs().sum() > 0
    for o in outputs.values():
        assert torch.isfinite(o.pooled.grad).all()
        assert (o.pooled.grad[~o.present] == 0).all()
        assert o.pooled.grad[o.present].abs().sum() > 0


def fit_accuracy(widths: dict[str, int], x: dict[str, torch.Tensor], y: torch.Tensor) -> float:
    """Train weighted fusion + a linear head on the first half; accuracy on the second."""
    torch.manual_seed(0)
    fusion = WeightedFusion(in_dims=widths, hidden=16, out_dims={"y": 2})
    return shared_fit_accuracy(WithHead(fusion), {k: x[k] for k in widths}, y)


def test_learns_a_label_that_needs_both_inputs() -> None:
    # s_a in {-3,-1,1,3}, s_b in {-2,2}: the sign of s_a + s_b needs both (each alone: 75%)
    g = torch.Generator().manual_seed(1)
    s_a = torch.tensor([-3.0, -1.0, 1.0, 3.0])[torch.randint(0, 4, (512,), generator=g)]
    s_b = torch.tensor([-2.0, 2.0])[torch.randint(0, 2, (512,), generator=g)]
    x = {"a": 0.3 * torch.randn(512, 4, generator=g), "b": 0.3 * torch.randn(512, 6, generator=g)}
    x["a"][:, 0], x["b"][:, 0] = s_a, s_b
    y = (s_a + s_b > 0).long()
    assert fit_accuracy({"a": 4, "b": 6}, x, y) > 0.95
    assert fit_accuracy({"a": 4}, x, y) < 0.85
    assert fit_accuracy({"b": 6}, x, y) < 0.85
