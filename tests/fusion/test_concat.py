"""Early (concatenation) fusion: masking, missing embeddings, gradients, XOR learnability."""

from __future__ import annotations

import torch
from torch import nn

from crossfuse.encoders.base import ModalityOutput
from crossfuse.fusion.concat import ConcatFusion
from tests.fusion.helpers import PRESENT, WIDTHS, WithHead, make_outputs, with_pooled
from tests.fusion.helpers import fit_accuracy as shared_fit_accuracy

assert_close = torch.testing.assert_close


def build(**options: object) -> ConcatFusion:
    torch.manual_seed(0)
    return ConcatFusion(in_dims=WIDTHS, hidden=16, out_dims={"y": 2}, **options)


def test_output_shape_and_widths() -> None:
    fusion = build()
    out = fusion(make_outputs(WIDTHS, PRESENT))
    assert fusion.out_dim == 16 and out.shape == (6, 16)
    assert fusion.missing.shape == (3, 16)  # proj_dim defaults to hidden
    narrow = build(proj_dim=4, layers=3, dropout=0.0)
    assert narrow.mlp[0].in_features == 3 * 4
    assert sum(isinstance(m, nn.Linear) for m in narrow.mlp) == 3
    assert narrow(make_outputs(WIDTHS, PRESENT)).shape == (6, 16)


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


def test_absent_slots_hold_the_missing_embeddings() -> None:
    fusion = build()
    outputs = make_outputs(WIDTHS, PRESENT)
    slots = fusion.slots(outputs)  # (B, M, P), inputs in sorted order
    for i, name in enumerate(sorted(WIDTHS)):
        for row, here in enumerate(PRESENT[name]):
            expected = (
                fusion.proj[i](outputs[name].pooled[row]) if here else fusion.missing[i]
            ).detach()
            assert_close(slots[row, i], expected)


def test_all_absent_rows_are_finite_and_equal() -> None:
    fusion = build().eval()
    out = fusion(make_outputs(WIDTHS, PRESENT))
    assert torch.isfinite(out).all()
    assert torch.equal(out[3], out[5])  # both rows see only the missing embeddings
    assert_close(out[3], fusion.mlp(fusion.missing.flatten()))


def test_rows_do_not_depend_on_other_rows() -> None:
    fusion = build().eval()
    outputs = make_outputs(WIDTHS, PRESENT)
    full = fusion(outputs)
    for i in range(6):
        one = {
            n: ModalityOutput(o.pooled[i : i + 1], o.present[i : i + 1]) for n, o in outputs.items()
        }
        assert_close(fusion(one)[0], full[i])


def test_dropout_is_active_only_in_training() -> None:
    fusion = build(dropout=0.5)
    outputs = make_outputs(WIDTHS, PRESENT)
    torch.manual_seed(1)
    assert not torch.equal(fusion(outputs), fusion(outputs))
    fusion.eval()
    assert torch.equal(fusion(outputs), fusion(outputs))


def test_gradients_finite_with_absent_inputs() -> None:
    fusion = build()
    outputs = make_outputs(WIDTHS, PRESENT)
    for n, o in outputs.items():  # NaN in every absent row, gradients wanted on the inputs
        pooled = o.pooled.masked_fill(~o.present[:, None], float("nan")).requires_grad_()
        outputs[n] = ModalityOutput(pooled, o.present)
    fusion(outputs).pow(2).sum().backward()
    for name, p in fusion.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert (fusion.missing.grad.abs().sum(dim=1) > 0).all()  # every input is absent somewhere
    for o in outputs.values():
        assert torch.isfinite(o.pooled.grad).all()
        assert (o.pooled.grad[~o.present] == 0).all()
        assert o.pooled.grad[o.present].abs().sum() > 0


def fit_accuracy(widths: dict[str, int], x: dict[str, torch.Tensor], y: torch.Tensor) -> float:
    """Train concat fusion + a linear head on the first half; accuracy on the second."""
    torch.manual_seed(0)
    fusion = ConcatFusion(in_dims=widths, hidden=16, out_dims={"y": 2}, dropout=0.0)
    return shared_fit_accuracy(WithHead(fusion), {k: x[k] for k in widths}, y)


def test_learns_xor_of_two_inputs() -> None:
    # each input holds one random bit; the label is their XOR, so neither alone says anything
    g = torch.Generator().manual_seed(1)
    a, b = (torch.randint(0, 2, (512,), generator=g) for _ in range(2))
    x = {"a": 0.3 * torch.randn(512, 4, generator=g), "b": 0.3 * torch.randn(512, 6, generator=g)}
    x["a"][:, 0], x["b"][:, 0] = 2.0 * a - 1, 2.0 * b - 1
    y = a ^ b
    assert fit_accuracy({"a": 4, "b": 6}, x, y) > 0.95
    assert fit_accuracy({"a": 4}, x, y) < 0.7
    assert fit_accuracy({"b": 6}, x, y) < 0.7
