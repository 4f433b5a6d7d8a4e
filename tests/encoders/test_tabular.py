"""The ``tabular-mlp`` encoder: shapes, per-cell masks, missingness, gradients, learnability."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from crossfuse.encoders import InputSpec, create_encoder
from crossfuse.encoders.tabular import TabularMLPEncoder, embedding_width
from crossfuse.errors import ConfigError

assert_close = torch.testing.assert_close


def make_encoder(n_numeric: int = 3, cards: list[int] | None = None, **options):
    cards = [5, 40] if cards is None else cards
    spec = InputSpec(name="tabular", modality="tabular", n_numeric=n_numeric, cardinalities=cards)
    enc = create_encoder("tabular-mlp", spec, **{"dim": 16, "hidden": (16,), **options})
    assert isinstance(enc, TabularMLPEncoder)
    return enc


def batch() -> dict[str, torch.Tensor]:
    """Four rows: full, partly missing, entirely missing (absent), unknown category."""
    numeric_present = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 0, 0], [0, 1, 1]], dtype=torch.bool)
    numeric = torch.randn(4, 3) * numeric_present
    categorical = torch.tensor([[2, 7], [0, 3], [0, 0], [1, 39]])
    present = numeric_present.any(1) | (categorical != 0).any(1)
    return {
        "numeric": numeric,
        "numeric_present": numeric_present,
        "categorical": categorical,
        "present": present,
    }


def test_shapes_masks_and_absent_rows() -> None:
    torch.manual_seed(0)
    enc = make_encoder()
    data = batch()
    out = enc(data)
    assert enc.out_dim == 16
    assert out.pooled.shape == (4, 16)
    assert out.tokens.shape == (4, 5, 16)  # 3 numeric + 2 categorical columns
    expected_mask = torch.cat([data["numeric_present"], data["categorical"] != 0], dim=1)
    assert torch.equal(out.token_mask, expected_mask)
    assert torch.equal(out.present, torch.tensor([True, True, False, True]))
    assert torch.equal(out.pooled[2], torch.zeros(16))
    assert torch.equal(out.tokens[~out.token_mask], torch.zeros(int((~expected_mask).sum()), 16))
    assert torch.isfinite(out.pooled).all() and torch.isfinite(out.tokens).all()


@pytest.mark.parametrize(("n_numeric", "cards"), [(0, [4, 6]), (2, [])])
def test_only_numeric_or_only_categorical_columns(n_numeric: int, cards: list[int]) -> None:
    torch.manual_seed(0)
    enc = make_encoder(n_numeric, cards)
    data = {
        "numeric": torch.randn(3, n_numeric),
        "numeric_present": torch.ones(3, n_numeric, dtype=torch.bool),
        "categorical": torch.full((3, len(cards)), 2),
        "present": torch.tensor([True, False, True]),
    }
    out = enc(data)
    assert out.pooled.shape == (3, 16) and torch.equal(out.pooled[1], torch.zeros(16))
    assert out.tokens.shape == (3, n_numeric + len(cards), 16)
    assert not out.token_mask[1].any() and out.token_mask[[0, 2]].all()


def test_values_under_a_missing_flag_are_ignored_but_missingness_is_a_signal() -> None:
    torch.manual_seed(1)
    enc = make_encoder().eval()
    data = batch()
    poked = dict(data, numeric=data["numeric"].clone())
    poked["numeric"][1, 1:] = 123.0  # cells marked missing
    assert_close(enc(poked).pooled, enc(data).pooled)
    assert_close(enc(poked).tokens, enc(data).tokens)
    zero_but_present = dict(data, numeric_present=data["numeric_present"].clone())
    zero_but_present["numeric_present"][1, 1] = True  # a real 0.0 instead of a missing value
    assert not torch.allclose(enc(zero_but_present).pooled[1], enc(data).pooled[1])


def test_row_output_does_not_depend_on_other_rows() -> None:
    torch.manual_seed(2)
    enc = make_encoder().eval()
    data = batch()
    together = enc(data).pooled
    for i in range(4):
        alone = enc({k: v[i : i + 1] for k, v in data.items()}).pooled
        assert_close(alone[0], together[i])


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(3)
    enc = make_encoder()
    out = enc(batch())
    (out.pooled.square().sum() + out.tokens.square().sum()).backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    for emb in enc.embeds:  # the "missing" id is a fixed zero vector
        assert torch.equal(emb.weight[0], torch.zeros(emb.embedding_dim))
        assert torch.equal(emb.weight.grad[0], torch.zeros(emb.embedding_dim))


def test_embedding_width_rule() -> None:
    assert [embedding_width(c) for c in (2, 5, 9, 31, 1000)] == [1, 3, 5, 16, 16]
    widths = [e.embedding_dim for e in make_encoder(1, [3, 100], cat_max_dim=8).embeds]
    assert widths == [2, 8]


def test_learns_a_rule_on_missingness_and_category() -> None:
    torch.manual_seed(4)
    n = 100
    numeric = torch.randn(n, 2)
    numeric_present = torch.rand(n, 2) > 0.3
    categorical = torch.randint(1, 6, (n, 1))
    # label: number 0 is missing, or the category is 3 or 4
    y = ((~numeric_present[:, 0]) | (categorical[:, 0] >= 3)).long()
    data = {
        "numeric": numeric * numeric_present,
        "numeric_present": numeric_present,
        "categorical": categorical,
        "present": torch.ones(n, dtype=torch.bool),
    }
    enc, probe = make_encoder(2, [6]), nn.Linear(16, 2)
    opt = torch.optim.Adam([*enc.parameters(), *probe.parameters()], lr=0.02)
    for _ in range(40):
        opt.zero_grad()
        nn.functional.cross_entropy(probe(enc(data).pooled), y).backward()
        opt.step()
    enc.eval()
    with torch.no_grad():
        accuracy = (probe(enc(data).pooled).argmax(1) == y).float().mean()
    assert accuracy > 0.9


@pytest.mark.parametrize(
    ("n_numeric", "cards", "options"),
    [(0, [], {}), (2, [1], {}), (2, [4], {"hidden": (16, 0)}), (2, [4], {"dropout": -0.1}),
     (2, [4], {"cat_max_dim": 0}), (2, [4], {"dim": 0})],
)  # fmt: skip
def test_bad_spec_or_options_raise_config_error(
    n_numeric: int, cards: list[int], options: dict
) -> None:
    with pytest.raises(ConfigError):
        make_encoder(n_numeric, cards, **options)
