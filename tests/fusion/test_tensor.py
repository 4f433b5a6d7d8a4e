"""Tensor fusion: the outer product by hand, absent inputs, the size guard, learnability."""

from __future__ import annotations

import pytest
import torch

from crossfuse.encoders.base import ModalityOutput
from crossfuse.errors import ConfigError
from crossfuse.fusion import create_fusion
from crossfuse.fusion.tensor import TensorFusion, outer_product
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
TINY = {"a": 3, "b": 5}


def build(in_dims: dict[str, int] = WIDTHS, **options: object) -> TensorFusion:
    torch.manual_seed(0)
    return TensorFusion(in_dims=in_dims, hidden=16, out_dims={"y": 2}, **options)


def tiny_outputs() -> dict[str, ModalityOutput]:
    return make_outputs(TINY, {"a": [True, True, False], "b": [True, False, False]})


def test_sizes() -> None:
    fusion = build()
    assert fusion.n_features == 9**3 and fusion.mlp[0].in_features == 729
    assert fusion(make_outputs(WIDTHS, PRESENT)).shape == (6, 16)
    mixed = build(proj_dim={"audio": 1, "image": 2, "text": 3}, layers=1)
    assert mixed.n_features == 2 * 3 * 4
    assert [p[0].out_features for p in mixed.proj] == [1, 2, 3]  # sorted: audio, image, text
    assert mixed(make_outputs(WIDTHS, PRESENT)).shape == (6, 16)


def test_matches_the_outer_product_computed_by_hand() -> None:
    fusion = build(TINY, proj_dim={"a": 2, "b": 3}).eval()
    outputs = tiny_outputs()
    xa = torch.tanh(fusion.proj[0][0](outputs["a"].pooled[0]))  # (2,)
    xb = torch.tanh(fusion.proj[1][0](outputs["b"].pooled[0]))  # (3,)
    ea, eb = torch.cat([xa, torch.ones(1)]), torch.cat([xb, torch.ones(1)])
    tensor = torch.einsum("i,j->ij", ea, eb)  # (3, 4)
    assert_close(tensor[:2, :3], torch.outer(xa, xb))  # the bimodal interactions
    assert_close(tensor[:2, 3], xa)  # the unimodal terms
    assert_close(tensor[2, :3], xb)
    assert_close(fusion.fused_tensor(outputs)[0], tensor.flatten())
    assert_close(fusion(outputs)[0], fusion.mlp(tensor.flatten()))


def test_absent_input_keeps_only_the_other_inputs_terms() -> None:
    fusion = build(TINY, proj_dim={"a": 2, "b": 3}).eval()
    outputs = tiny_outputs()
    t = fusion.fused_tensor(outputs).view(3, 3, 4)  # (B, a: 2 + 1, b: 3 + 1)
    xa = torch.tanh(fusion.proj[0][0](outputs["a"].pooled[1]))
    expected = torch.zeros(3, 4)
    expected[:2, 3], expected[2, 3] = xa, 1.0  # row 1: "b" absent → (xa, 1) ⊗ (0, 0, 0, 1)
    assert_close(t[1], expected)
    only_one = torch.zeros(3, 4)
    only_one[2, 3] = 1.0  # row 2: nothing present → the constant corner
    assert torch.equal(t[2], only_one)


def test_outer_product_orders_first_input_slowest() -> None:
    a, b, c = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 5.0]]), torch.tensor([[7.0, 1.0]])
    expected = torch.einsum("bi,bj,bk->bijk", a, b, c).flatten(1)
    assert torch.equal(outer_product([a, b, c]), expected)
    assert torch.equal(outer_product([a]), a)


def test_absent_rows_ignore_their_values() -> None:
    fusion = build().eval()
    outputs = make_outputs(WIDTHS, PRESENT)
    base = fusion(outputs)
    for name in WIDTHS:
        absent = ~outputs[name].present
        for value in (1e6, float("nan"), float("inf")):
            assert torch.equal(fusion(with_pooled(outputs, name, absent, value)), base)
    assert torch.equal(base[3], base[5]) and torch.isfinite(base).all()


def test_gradients_finite_with_absent_inputs() -> None:
    fusion = build()
    outputs = with_grad(make_outputs(WIDTHS, PRESENT))  # NaN in every absent row
    fusion(outputs).pow(2).sum().backward()
    for name, p in fusion.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    for o in outputs.values():
        assert (o.pooled.grad[~o.present] == 0).all() and o.pooled.grad.abs().sum() > 0


def test_size_guard_names_the_size_and_the_ways_out() -> None:
    with pytest.raises(ConfigError) as err:
        create_fusion("tensor", WIDTHS, hidden=16, out_dims={}, proj_dim=40)
    message = str(err.value)
    assert "3 inputs" in message and "68,921 features" in message and "65,536" in message
    assert "proj_dim" in message and "'low-rank'" in message
    with pytest.raises(ConfigError, match="125 features"):
        create_fusion("tensor", WIDTHS, hidden=16, out_dims={}, proj_dim=4, max_features=100)
    assert build(proj_dim=4, max_features=125).n_features == 125


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"proj_dim": 0}, "proj_dim"),
        ({"proj_dim": {"text": 2}}, "proj_dim must name exactly"),
        ({"proj_dim": {"text": 2, "image": 2, "audio": 0}}, "proj_dim of 'audio'"),
        ({"layers": 0}, "layers"),
        ({"dropout": -0.5}, "dropout"),
        ({"max_features": 0}, "max_features"),
    ],
)
def test_bad_options_are_config_errors(options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        create_fusion("tensor", WIDTHS, hidden=16, out_dims={}, **options)


def accuracy(x: dict[str, torch.Tensor], y: torch.Tensor) -> float:
    torch.manual_seed(0)
    widths = {k: v.shape[1] for k, v in x.items()}
    fusion = TensorFusion(in_dims=widths, hidden=16, out_dims={}, dropout=0.0)
    return fit_accuracy(WithHead(fusion), x, y)


def test_learns_xor_of_two_inputs() -> None:
    x, y = xor_inputs()
    assert accuracy(x, y) > 0.9
    assert accuracy({"a": x["a"]}, y) < 0.7
