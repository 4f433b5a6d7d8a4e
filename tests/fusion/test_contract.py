"""The fusion contract, checked for every registered fusion (and a few option variants).

Shape, absent inputs reaching nothing (not even as NaN/inf), present inputs mattering,
finite and identical all-absent rows, rows independent of each other, gradients that
reach exactly the present values, single-input construction, and wrong input names.
"""

from __future__ import annotations

import pytest
import torch

import crossfuse.fusion.attention  # noqa: F401  (registers "attention" until the lead wires it)
import crossfuse.fusion.gated  # noqa: F401
import crossfuse.fusion.low_rank  # noqa: F401
import crossfuse.fusion.tensor  # noqa: F401
from crossfuse.encoders.base import ModalityOutput
from crossfuse.errors import ConfigError
from crossfuse.fusion.base import Fusion, create_fusion, fusion_names
from tests.fusion.helpers import PRESENT, WIDTHS, make_outputs, one_row, with_grad, with_pooled

OUT_DIMS = {"y": 3}
ALL_ABSENT = [3, 5]  # rows of PRESENT where no input is present
EXTRA = [  # non-default options whose code paths differ enough to check them too
    ("attention", {"cross_modal": True}),
    ("gated", {"normalize": False}),
]
VARIANTS = [(n, {}) for n in fusion_names()] + [(n, o) for n, o in EXTRA if n in fusion_names()]
IDS = [n + "".join(f"-{k}={v}" for k, v in o.items()) for n, o in VARIANTS]

variants = pytest.mark.parametrize(("name", "options"), VARIANTS, ids=IDS)


def build(name: str, options: dict, in_dims: dict[str, int] = WIDTHS) -> Fusion:
    torch.manual_seed(0)
    return create_fusion(name, in_dims, hidden=16, out_dims=OUT_DIMS, **options)


def expected_width(fusion: Fusion) -> int:
    return sum(OUT_DIMS.values()) if fusion.decision_level else 16


def assert_same(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@variants
def test_output_shape(name: str, options: dict) -> None:
    fusion = build(name, options)
    out = fusion(make_outputs(WIDTHS, PRESENT))
    assert fusion.out_dim == expected_width(fusion)
    assert out.shape == (6, fusion.out_dim)


@variants
def test_absent_values_change_nothing(name: str, options: dict) -> None:
    fusion = build(name, options).eval()
    outputs = make_outputs(WIDTHS, PRESENT)
    base = fusion(outputs)
    for input_name in WIDTHS:
        absent = ~outputs[input_name].present
        for value in (1e6, float("nan"), float("inf"), -float("inf")):
            assert_same(fusion(with_pooled(outputs, input_name, absent, value)), base)


@variants
def test_present_values_change_their_rows_only(name: str, options: dict) -> None:
    fusion = build(name, options).eval()
    outputs = make_outputs(WIDTHS, PRESENT)
    base = fusion(outputs)
    g = torch.Generator().manual_seed(5)
    for input_name, o in outputs.items():
        pooled = o.pooled + torch.where(
            o.present[:, None], torch.randn(o.pooled.shape, generator=g), 0
        )
        out = fusion({**outputs, input_name: ModalityOutput(pooled, o.present)})
        changed = (out != base).any(dim=1)  # (B,)
        assert torch.equal(changed, o.present), input_name


@variants
def test_all_absent_rows_are_finite_and_equal(name: str, options: dict) -> None:
    fusion = build(name, options).eval()
    out = fusion(make_outputs(WIDTHS, PRESENT))
    assert torch.isfinite(out).all()
    assert torch.equal(out[ALL_ABSENT[0]], out[ALL_ABSENT[1]])
    other = fusion(make_outputs(WIDTHS, PRESENT, seed=9))  # other (absent) values, same rows
    assert torch.equal(other[ALL_ABSENT], out[ALL_ABSENT])


@variants
def test_rows_do_not_depend_on_other_rows(name: str, options: dict) -> None:
    fusion = build(name, options).eval()
    outputs = make_outputs(WIDTHS, PRESENT)
    full = fusion(outputs)
    for i in range(len(full)):
        torch.testing.assert_close(fusion(one_row(outputs, i))[0], full[i], rtol=0, atol=1e-5)


@variants
def test_gradients_reach_exactly_the_present_values(name: str, options: dict) -> None:
    fusion = build(name, options).train()
    outputs = with_grad(make_outputs(WIDTHS, PRESENT))  # NaN in every absent row
    torch.manual_seed(1)
    out = fusion(outputs)
    # a random projection, not out.pow(2): a LayerNorm output has a constant sum of squares
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(2))
    (out * weights).sum().backward()
    for input_name, o in outputs.items():
        grad = o.pooled.grad
        assert grad is not None and torch.isfinite(grad).all(), input_name
        assert (grad[~o.present] == 0).all(), input_name
        assert grad[o.present].abs().sum() > 0, input_name
    for param_name, p in fusion.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), param_name


@variants
def test_single_input(name: str, options: dict) -> None:
    fusion = build(name, options, {"text": 8}).eval()
    outputs = make_outputs({"text": 8}, PRESENT)  # rows 0-2 present, 3-5 absent
    out = fusion(outputs)
    assert out.shape == (6, expected_width(fusion)) and torch.isfinite(out).all()
    assert torch.equal(out[3], out[4]) and torch.equal(out[4], out[5])
    assert not torch.equal(out[0], out[1])
    absent = ~outputs["text"].present
    assert_same(fusion(with_pooled(outputs, "text", absent, float("nan"))), out)


@variants
def test_wrong_input_names_are_config_errors(name: str, options: dict) -> None:
    fusion = build(name, options)
    outputs = make_outputs(WIDTHS, PRESENT)
    del outputs["image"]
    with pytest.raises(ConfigError, match="built for inputs"):
        fusion(outputs)
