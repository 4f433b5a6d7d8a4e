"""Late (decision-level) fusion: per-input logits, weighting, masking, gradients, learning."""

from __future__ import annotations

import torch

from crossfuse.encoders.base import ModalityOutput
from crossfuse.fusion.late import LateFusion
from tests.fusion.helpers import PRESENT, WIDTHS, make_outputs, with_pooled
from tests.fusion.helpers import fit_accuracy as shared_fit_accuracy

assert_close = torch.testing.assert_close

TASKS = {"kind": 3, "good": 2}


def build(**options: object) -> LateFusion:
    torch.manual_seed(0)
    fusion = LateFusion(in_dims=WIDTHS, hidden=16, out_dims=TASKS, **options)
    with torch.no_grad():  # unequal weights and a non-zero prior, so the tests see them
        fusion.logits.copy_(torch.tensor([0.3, -1.2, 2.0]))
        fusion.bias.copy_(torch.arange(5.0))
    return fusion


def test_output_shape_and_decision_level() -> None:
    fusion = build()
    out = fusion(make_outputs(WIDTHS, PRESENT))
    assert fusion.decision_level is True
    assert fusion.out_dim == 5 and out.shape == (6, 5)
    logits = fusion.per_input_logits(make_outputs(WIDTHS, PRESENT))
    assert sorted(logits) == sorted(WIDTHS)
    assert all(z.shape == (6, 5) for z in logits.values())


def test_output_is_the_weighted_combination_of_per_input_logits() -> None:
    fusion = build().eval()
    outputs = make_outputs(WIDTHS, PRESENT)
    out = fusion(outputs)
    logits = fusion.per_input_logits(outputs)
    weights = fusion.modality_weights(outputs)
    expected = sum(weights[n][:, None] * logits[n] for n in WIDTHS)
    has_any = torch.tensor([True, True, True, False, True, False])
    assert_close(out[has_any], expected[has_any])
    assert_close(out[4], logits["audio"][4])  # the only present input gets all the weight


def test_weights_sum_to_one_over_present_inputs() -> None:
    fusion = build()
    outputs = make_outputs(WIDTHS, PRESENT)
    w = fusion.modality_weights(outputs)
    assert_close(sum(w.values()), torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.0]))
    probs = torch.softmax(torch.tensor([0.3, -1.2, 2.0]), dim=0)  # audio, image, text
    assert_close(w["audio"][1], probs[0] / (probs[0] + probs[2]))
    for n in WIDTHS:
        assert (w[n][~outputs[n].present] == 0).all()


def test_all_absent_rows_get_the_learned_bias() -> None:
    fusion = build()
    out = fusion(make_outputs(WIDTHS, PRESENT))
    assert torch.isfinite(out).all()
    for row in (3, 5):
        assert_close(out[row], torch.arange(5.0))


def test_absent_rows_ignore_their_values() -> None:
    fusion = build().eval()
    outputs = make_outputs(WIDTHS, PRESENT)
    base = fusion(outputs)
    for name in WIDTHS:
        absent = ~outputs[name].present
        for value in (1e6, float("nan"), float("inf")):
            assert torch.equal(fusion(with_pooled(outputs, name, absent, value)), base)
        present = outputs[name].present
        out = fusion(with_pooled(outputs, name, present, 3.0))
        assert not torch.equal(out[present], base[present])
        assert torch.equal(out[~present], base[~present])


def test_rows_do_not_depend_on_other_rows() -> None:
    fusion = build().eval()
    outputs = make_outputs(WIDTHS, PRESENT)
    full = fusion(outputs)
    for i in range(6):
        one = {
            n: ModalityOutput(o.pooled[i : i + 1], o.present[i : i + 1]) for n, o in outputs.items()
        }
        assert_close(fusion(one)[0], full[i])


def test_gradients_finite_with_absent_inputs() -> None:
    fusion = build()
    outputs = make_outputs(WIDTHS, PRESENT)
    for n, o in outputs.items():  # NaN in every absent row, gradients wanted on the inputs
        pooled = o.pooled.masked_fill(~o.present[:, None], float("nan")).requires_grad_()
        outputs[n] = ModalityOutput(pooled, o.present)
    fusion(outputs).pow(2).sum().backward()
    for name, p in fusion.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert fusion.logits.grad.abs().sum() > 0
    assert fusion.bias.grad.abs().sum() > 0
    for o in outputs.values():
        assert torch.isfinite(o.pooled.grad).all()
        assert (o.pooled.grad[~o.present] == 0).all()
        assert o.pooled.grad[o.present].abs().sum() > 0


def fit_accuracy(widths: dict[str, int], x: dict[str, torch.Tensor], y: torch.Tensor) -> float:
    """Train late fusion (its output is the logits) on the first half; accuracy on the second."""
    torch.manual_seed(0)
    fusion = LateFusion(in_dims=widths, hidden=16, out_dims={"y": 2}, dropout=0.0)
    return shared_fit_accuracy(fusion, {k: x[k] for k in widths}, y)


def test_learns_a_label_that_needs_both_inputs() -> None:
    # s_a in {-3,-1,1,3}, s_b in {-2,2}: the sign of s_a + s_b needs both (each alone: 75%).
    # Late fusion adds per-input evidence, so it can learn this (but not an XOR).
    g = torch.Generator().manual_seed(1)
    s_a = torch.tensor([-3.0, -1.0, 1.0, 3.0])[torch.randint(0, 4, (512,), generator=g)]
    s_b = torch.tensor([-2.0, 2.0])[torch.randint(0, 2, (512,), generator=g)]
    x = {"a": 0.3 * torch.randn(512, 4, generator=g), "b": 0.3 * torch.randn(512, 6, generator=g)}
    x["a"][:, 0], x["b"][:, 0] = s_a, s_b
    y = (s_a + s_b > 0).long()
    assert fit_accuracy({"a": 4, "b": 6}, x, y) > 0.95
    assert fit_accuracy({"a": 4}, x, y) < 0.85
    assert fit_accuracy({"b": 6}, x, y) < 0.85
