"""Gated multimodal units: gates, the gated sum, missing inputs, options, learnability."""

from __future__ import annotations

import pytest
import torch

from crossfuse.errors import ConfigError
from crossfuse.fusion import create_fusion
from crossfuse.fusion.gated import GatedFusion, masked_softmax
from tests.fusion.helpers import (
    PRESENT,
    WIDTHS,
    WithHead,
    fit_accuracy,
    make_outputs,
    with_grad,
    with_pooled,
    xor_inputs,
)

assert_close = torch.testing.assert_close
HAS_ANY = torch.tensor([True, True, True, False, True, False])


def build(**options: object) -> GatedFusion:
    torch.manual_seed(0)
    return GatedFusion(in_dims=WIDTHS, hidden=16, out_dims={"y": 2}, **options)


def test_layers_and_output_shape() -> None:
    fusion = build()
    out = fusion(make_outputs(WIDTHS, PRESENT))
    assert fusion.out_dim == 16 and out.shape == (6, 16)
    assert fusion.gate.in_features == 6 + 12 + 8 and fusion.gate.out_features == 3
    assert [u[0].in_features for u in fusion.units] == [6, 12, 8]  # audio, image, text
    assert type(create_fusion("gated", WIDTHS, hidden=16, out_dims={})) is GatedFusion


def test_softmax_gates_sum_to_one_over_present_inputs() -> None:
    fusion = build()
    outputs = make_outputs(WIDTHS, PRESENT)
    w = fusion.modality_weights(outputs)
    assert_close(sum(w.values()), HAS_ANY.float())
    for n in WIDTHS:
        assert (w[n][~outputs[n].present] == 0).all()
        assert (w[n][outputs[n].present] > 0).all()
    assert w["audio"][4] == 1.0  # the only present input gets the whole gate


def test_gates_see_missing_vectors_for_absent_inputs() -> None:
    fusion = build(normalize=False)
    outputs = make_outputs(WIDTHS, PRESENT)
    row = 1  # audio and text present, image absent
    x = torch.cat([outputs["audio"].pooled[row], fusion.missing[1], outputs["text"].pooled[row]])
    expected = torch.sigmoid(fusion.gate(x)).detach()
    expected[1] = 0.0  # the absent input's gate is forced to 0
    assert_close(fusion.gates(outputs)[row], expected)


def test_sigmoid_gates_are_independent() -> None:
    fusion = build(normalize=False)
    with torch.no_grad():
        fusion.gate.bias.fill_(3.0)  # every gate near 1, far above an even share
    z = fusion.gates(make_outputs(WIDTHS, PRESENT))  # (B, M)
    assert (z[0] > 0.8).all() and z[0].sum() > 2.0
    assert (z[3] == 0).all() and (z[5] == 0).all()


def test_output_is_the_gated_sum_of_units() -> None:
    fusion = build().eval()
    outputs = make_outputs(WIDTHS, PRESENT)
    out = fusion(outputs)
    z, h = fusion.gates(outputs), fusion.units_of(outputs)  # (B, M), (B, M, H)
    assert_close(out[HAS_ANY], (z[:, :, None] * h).sum(1)[HAS_ANY])
    audio = torch.tanh(fusion.units[0][0](outputs["audio"].pooled[4]))
    assert_close(out[4], audio)  # audio alone: its unit, untouched
    assert torch.equal(out[3], fusion.empty) and torch.equal(out[5], fusion.empty)


@pytest.mark.parametrize("normalize", [True, False])
def test_absent_rows_ignore_their_values(normalize: bool) -> None:
    fusion = build(normalize=normalize).eval()
    outputs = make_outputs(WIDTHS, PRESENT)
    base = fusion(outputs)
    for name in WIDTHS:
        absent = ~outputs[name].present
        for value in (1e6, float("nan"), float("inf")):
            assert torch.equal(fusion(with_pooled(outputs, name, absent, value)), base)


def test_gradients_finite_and_reach_missing_and_empty() -> None:
    fusion = build()
    outputs = with_grad(make_outputs(WIDTHS, PRESENT))  # NaN in every absent row
    fusion(outputs).pow(2).sum().backward()
    for name, p in fusion.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # audio/image are absent in rows where two other inputs compete for the gate; text is
    # absent only where at most one input is present, so a softmax gate is constant there
    audio, image, text = (m.grad.abs().sum() for m in fusion.missing)
    assert audio > 0 and image > 0 and text == 0
    assert fusion.empty.grad.abs().sum() > 0
    for o in outputs.values():
        assert (o.pooled.grad[~o.present] == 0).all()


def test_masked_softmax_handles_empty_rows() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [5.0, -5.0, 0.0]], requires_grad=True)
    present = torch.tensor([[True, False, True], [False, False, False], [True, True, True]])
    p = masked_softmax(logits, present)
    assert_close(p[0], torch.tensor([torch.e**-2 / (1 + torch.e**-2), 0, 1 / (1 + torch.e**-2)]))
    assert (p[1] == 0).all()
    assert_close(p[2], torch.softmax(logits[2], 0))
    p.pow(2).sum().backward()
    assert torch.isfinite(logits.grad).all() and (logits.grad[1] == 0).all()


def test_dropout_is_active_only_in_training() -> None:
    fusion = build(dropout=0.5)
    outputs = make_outputs(WIDTHS, PRESENT)
    torch.manual_seed(1)
    assert not torch.equal(fusion(outputs), fusion(outputs))
    fusion.eval()
    assert torch.equal(fusion(outputs), fusion(outputs))


@pytest.mark.parametrize(
    ("options", "match"),
    [({"normalize": "yes"}, "normalize"), ({"dropout": 1.0}, "dropout"), ({"size": 3}, "gated")],
)
def test_bad_options_are_config_errors(options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        create_fusion("gated", WIDTHS, hidden=16, out_dims={}, **options)


def accuracy(x: dict[str, torch.Tensor], y: torch.Tensor, **options: object) -> float:
    torch.manual_seed(0)
    widths = {k: v.shape[1] for k, v in x.items()}
    fusion = GatedFusion(in_dims=widths, hidden=16, out_dims={}, dropout=0.0, **options)
    return fit_accuracy(WithHead(fusion), x, y)


def test_softmax_gates_learn_to_pick_the_input_that_knows() -> None:
    # "b" says (column 1) which input holds the label's bit: the task gates are made for
    g = torch.Generator().manual_seed(3)
    bit_a, bit_b, pick_a = (torch.randint(0, 2, (512,), generator=g) for _ in range(3))
    x = {"a": 0.3 * torch.randn(512, 4, generator=g), "b": 0.3 * torch.randn(512, 6, generator=g)}
    x["a"][:, 0], x["b"][:, 0], x["b"][:, 1] = 2.0 * bit_a - 1, 2.0 * bit_b - 1, 2.0 * pick_a - 1
    y = torch.where(pick_a.bool(), bit_a, bit_b)
    assert accuracy(x, y) > 0.9
    assert accuracy({"a": x["a"]}, y) < 0.85  # right only when "a" happens to be picked


def test_sigmoid_gates_learn_xor() -> None:
    # a softmax-gated sum of unimodal units cannot express XOR; independent gates can
    x, y = xor_inputs()
    assert accuracy(x, y, normalize=False) > 0.9
    assert accuracy({"a": x["a"]}, y, normalize=False) < 0.7
