"""The ``text-gru`` encoder: shapes, masking, padding invariance, gradients, learnability."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from crossfuse.encoders import InputSpec, create_encoder
from crossfuse.encoders.text import TextGRUEncoder, masked_mean
from crossfuse.errors import ConfigError

assert_close = torch.testing.assert_close
VOCAB = 12


def make_encoder(pooling: str = "mean", **options) -> TextGRUEncoder:
    spec = InputSpec(name="caption", modality="text", vocab_size=VOCAB)
    options = {"dim": 16, "embed_dim": 8, "hidden": 8, **options}
    return create_encoder("text-gru", spec, pooling=pooling, **options)


def batch(seqs: list[list[int] | None], width: int | None = None) -> dict[str, torch.Tensor]:
    """Collate like TextProcessor.collate; ``None`` is an absent cell."""
    lengths = torch.tensor([len(s) if s else 0 for s in seqs])
    width = width or max(int(lengths.max()), 1)
    ids = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, : len(s)] = torch.tensor(s)
    present = torch.tensor([s is not None for s in seqs])
    return {"ids": ids, "lengths": lengths, "present": present}


SEQS = [[2, 3, 4], [5, 6, 7, 8, 9], None, [10, 11]]


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_shapes_masks_and_absent_rows(pooling: str) -> None:
    torch.manual_seed(0)
    enc = make_encoder(pooling)
    out = enc(batch(SEQS))
    assert enc.out_dim == 16
    assert out.pooled.shape == (4, 16)
    assert out.tokens.shape == (4, 5, 16)
    expected_mask = torch.tensor(
        [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool
    )
    assert torch.equal(out.token_mask, expected_mask)
    assert torch.equal(out.present, torch.tensor([True, True, False, True]))
    assert torch.equal(out.pooled[2], torch.zeros(16))
    assert torch.equal(out.tokens[~out.token_mask], torch.zeros(int((~expected_mask).sum()), 16))
    assert torch.isfinite(out.pooled).all() and torch.isfinite(out.tokens).all()
    assert out.pooled[[0, 1, 3]].abs().sum(dim=1).gt(0).all()


def test_absent_row_with_leftover_ids_is_still_zero_and_ignored() -> None:
    torch.manual_seed(0)
    enc = make_encoder().eval()
    b = batch([[2, 3], [4, 5]])
    b["present"] = torch.tensor([True, False])
    out = enc(b)
    assert torch.equal(out.pooled[1], torch.zeros(16))
    assert not out.token_mask[1].any()


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_trailing_padding_does_not_change_output(pooling: str) -> None:
    torch.manual_seed(1)
    enc = make_encoder(pooling).eval()
    short = enc(batch(SEQS))
    long = enc(batch(SEQS, width=11))
    assert_close(long.pooled, short.pooled)
    assert_close(long.tokens[:, :5], short.tokens)
    assert torch.equal(long.tokens[:, 5:], torch.zeros(4, 6, 16))


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_row_output_does_not_depend_on_other_rows(pooling: str) -> None:
    torch.manual_seed(2)
    enc = make_encoder(pooling).eval()
    together = enc(batch(SEQS)).pooled
    for i, seq in enumerate(SEQS):
        alone = enc(batch([seq])).pooled
        assert_close(alone[0], together[i])


def test_attention_pooling_ignores_masked_positions() -> None:
    enc = make_encoder("attention")
    with torch.no_grad():
        enc.pool.query.copy_(torch.randn(16))
    tokens = torch.randn(2, 4, 16)
    mask = torch.tensor([[True, True, False, False], [True, False, False, False]])
    pooled = enc.pool(tokens, mask)
    changed = tokens.clone()
    changed[~mask] = 1e4
    assert_close(enc.pool(changed, mask), pooled)
    assert_close(pooled[1], tokens[1, 0])  # a single real token gets all the weight


def test_masked_mean_averages_real_tokens_only() -> None:
    tokens = torch.arange(12.0).view(2, 3, 2)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    assert_close(masked_mean(tokens, mask), torch.tensor([[1.0, 2.0], [0.0, 0.0]]))


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_gradients_reach_every_parameter(pooling: str) -> None:
    torch.manual_seed(3)
    enc = make_encoder(pooling, layers=2)
    out = enc(batch(SEQS))
    (out.pooled.square().sum() + out.tokens.square().sum()).backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert torch.equal(enc.embed.weight.grad[0], torch.zeros(8))  # <pad> stays fixed


def test_learns_whether_a_word_occurs() -> None:
    torch.manual_seed(4)
    gen = torch.Generator().manual_seed(4)
    seqs, labels = [], []
    for i in range(100):
        n = int(torch.randint(3, 9, (1,), generator=gen))
        seq = torch.randint(2, VOCAB, (n,), generator=gen)
        seq[seq == 5] = 6
        if i % 2:
            seq[int(torch.randint(0, n, (1,), generator=gen))] = 5
        seqs.append(seq.tolist())
        labels.append(i % 2)
    data, y = batch(seqs), torch.tensor(labels)
    enc, probe = make_encoder(dropout=0.0), nn.Linear(16, 2)
    params = [*enc.parameters(), *probe.parameters()]
    opt = torch.optim.Adam(params, lr=0.02)
    for _ in range(40):
        opt.zero_grad()
        nn.functional.cross_entropy(probe(enc(data).pooled), y).backward()
        opt.step()
    enc.eval()
    with torch.no_grad():
        accuracy = (probe(enc(data).pooled).argmax(1) == y).float().mean()
    assert accuracy > 0.9


@pytest.mark.parametrize(
    "options",
    [{"pooling": "max"}, {"dim": 0}, {"hidden": -1}, {"dropout": 1.0}, {"layers": 1.5}],
)
def test_bad_options_raise_config_error(options: dict) -> None:
    with pytest.raises(ConfigError):
        make_encoder(**{"pooling": "mean", **options})


def test_vocabulary_without_reserved_ids_is_rejected() -> None:
    with pytest.raises(ConfigError, match="vocab"):
        create_encoder("text-gru", InputSpec(name="t", modality="text", vocab_size=0))
