"""Low-rank fusion: the LMF formula by einsum, its equality with a full tensor fusion,
absent inputs, bad ranks, learnability."""

from __future__ import annotations

import pytest
import torch

from crossfuse.encoders.base import ModalityOutput
from crossfuse.errors import ConfigError
from crossfuse.fusion import create_fusion
from crossfuse.fusion.low_rank import LowRankFusion
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


def build(in_dims: dict[str, int] = WIDTHS, **options: object) -> LowRankFusion:
    torch.manual_seed(0)
    fusion = LowRankFusion(in_dims=in_dims, hidden=16, out_dims={"y": 2}, **options)
    with torch.no_grad():
        fusion.bias.normal_()  # non-zero, so the formula tests see it
    return fusion


def extended_by_hand(
    fusion: LowRankFusion, outputs: dict[str, ModalityOutput]
) -> list[torch.Tensor]:
    """(tanh(W x + b), 1) per input in sorted order, (0, ..., 0, 1) where absent."""
    slots = []
    for proj, n in zip(fusion.proj, sorted(outputs), strict=True):
        o = outputs[n]
        x = torch.tanh(proj[0](torch.nan_to_num(o.pooled)))
        x = x * o.present[:, None]  # values here are finite, so a product is fine
        slots.append(torch.cat([x, torch.ones(len(x), 1)], dim=1))
    return slots


def test_shapes() -> None:
    fusion = build(rank=3, proj_dim=5)
    assert fusion.out_dim == 16 and fusion.rank == 3
    assert [tuple(f.shape) for f in fusion.factors] == [(3, 6, 16)] * 3
    assert fusion(make_outputs(WIDTHS, PRESENT)).shape == (6, 16)
    mixed = build(proj_dim={"audio": 2, "image": 3, "text": 4}, rank=1)
    assert [f.shape[1] for f in mixed.factors] == [3, 4, 5]  # sorted: audio, image, text


@pytest.mark.parametrize("rank", [1, 4])
def test_matches_the_lmf_formula(rank: int) -> None:
    fusion = build(rank=rank, proj_dim=3).eval()
    outputs = make_outputs(WIDTHS, PRESENT)
    a, i, t = extended_by_hand(fusion, outputs)  # audio, image, text: (B, 4) each
    fa, fi, ft = fusion.factors  # (R, 4, H) each
    expected = torch.einsum("bp,rph,bq,rqh,bs,rsh->bh", a, fa, i, fi, t, ft) + fusion.bias
    assert_close(fusion(outputs), expected)


def test_equals_tensor_fusion_with_the_rebuilt_weight_tensor() -> None:
    fusion = build({"a": 3, "b": 5}, rank=2, proj_dim=2).eval()
    outputs = make_outputs({"a": 3, "b": 5}, {"a": [True, True, False], "b": [True, False, True]})
    xa, xb = extended_by_hand(fusion, outputs)
    weight = torch.einsum("rph,rqh->pqh", *fusion.factors)  # (3, 3, H): the full tensor
    full = torch.einsum("bp,bq->bpq", xa, xb).flatten(1) @ weight.flatten(0, 1)  # (B, H)
    assert_close(fusion(outputs), full + fusion.bias)


def test_absent_input_contributes_the_last_factor_rows() -> None:
    fusion = build().eval()
    outputs = make_outputs(WIDTHS, PRESENT)
    factors = fusion.per_input_factors(outputs)  # [(B, R, H)]
    for f, w, n in zip(factors, fusion.factors, sorted(WIDTHS), strict=True):
        for row in torch.nonzero(~outputs[n].present).flatten():
            assert_close(f[row], w[:, -1, :])
    out = fusion(outputs)
    constant = torch.stack([w[:, -1, :] for w in fusion.factors]).prod(0).sum(0) + fusion.bias
    assert_close(out[3], constant)
    assert torch.equal(out[3], out[5])


def test_absent_rows_ignore_their_values() -> None:
    fusion = build().eval()
    outputs = make_outputs(WIDTHS, PRESENT)
    base = fusion(outputs)
    for name in WIDTHS:
        absent = ~outputs[name].present
        for value in (1e6, float("nan"), float("inf")):
            assert torch.equal(fusion(with_pooled(outputs, name, absent, value)), base)


def test_gradients_finite_with_absent_inputs() -> None:
    fusion = build()
    outputs = with_grad(make_outputs(WIDTHS, PRESENT))  # NaN in every absent row
    fusion(outputs).pow(2).sum().backward()
    for name, p in fusion.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    for o in outputs.values():
        assert (o.pooled.grad[~o.present] == 0).all() and o.pooled.grad.abs().sum() > 0


def test_dropout_is_active_only_in_training() -> None:
    fusion = build(dropout=0.5)
    outputs = make_outputs(WIDTHS, PRESENT)
    torch.manual_seed(1)
    assert not torch.equal(fusion(outputs), fusion(outputs))
    fusion.eval()
    assert torch.equal(fusion(outputs), fusion(outputs))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"rank": 0}, "low-rank rank"),
        ({"rank": -2}, "low-rank rank"),
        ({"rank": 2.5}, "low-rank rank"),
        ({"rank": True}, "low-rank rank"),
        ({"proj_dim": 0}, "proj_dim"),
        ({"proj_dim": {"text": 4}}, "proj_dim must name exactly"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_options_are_config_errors(options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        create_fusion("low-rank", WIDTHS, hidden=16, out_dims={}, **options)


def accuracy(x: dict[str, torch.Tensor], y: torch.Tensor) -> float:
    torch.manual_seed(0)
    widths = {k: v.shape[1] for k, v in x.items()}
    fusion = LowRankFusion(in_dims=widths, hidden=16, out_dims={}, dropout=0.0)
    return fit_accuracy(WithHead(fusion), x, y)


def test_learns_xor_of_two_inputs() -> None:
    x, y = xor_inputs()
    assert accuracy(x, y) > 0.9
    assert accuracy({"a": x["a"]}, y) < 0.7
