"""The ``audio-cnn-gru`` encoder: shapes, absent rows, batch independence, gradients, learning."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from crossfuse.encoders import InputSpec, create_encoder
from crossfuse.encoders.audio import AudioCNNGRUEncoder
from crossfuse.errors import ConfigError

assert_close = torch.testing.assert_close
PRESENT = torch.tensor([True, False, True, True])


def make_encoder(shape: tuple[int, int] = (16, 20), **options) -> AudioCNNGRUEncoder:
    spec = InputSpec(name="sound", modality="audio", shape=shape)
    options = {"dim": 16, "channels": (4, 8), "hidden": 8, **options}
    return create_encoder("audio-cnn-gru", spec, **options)


def batch(shape: tuple[int, int] = (16, 20), present: torch.Tensor = PRESENT) -> dict:
    mel = torch.randn(len(present), *shape) * present.view(-1, 1, 1)
    return {"mel": mel, "present": present}


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_shapes_and_absent_rows(pooling: str) -> None:
    torch.manual_seed(0)
    enc = make_encoder(pooling=pooling)
    out = enc(batch())
    assert enc.out_dim == 16
    assert out.pooled.shape == (4, 16)
    assert out.tokens.shape == (4, 5, 16)  # 20 frames halved twice
    assert torch.equal(out.token_mask, PRESENT.view(-1, 1).expand(4, 5))
    assert torch.equal(out.present, PRESENT)
    assert torch.equal(out.pooled[1], torch.zeros(16))
    assert torch.equal(out.tokens[1], torch.zeros(5, 16))
    assert torch.isfinite(out.pooled).all() and torch.isfinite(out.tokens).all()
    assert out.pooled[PRESENT].abs().sum(dim=1).gt(0).all()


def test_pooled_is_the_mean_of_the_frame_tokens() -> None:
    torch.manual_seed(0)
    out = make_encoder()(batch())
    assert_close(out.pooled, out.tokens.mean(dim=1))


@pytest.mark.parametrize(
    ("shape", "options", "frames_out"),
    [((3, 3), {}, 1), ((5, 1), {}, 1), ((3, 7), {"channels": (4,)}, 4),
     ((3, 8), {"channels": (4, 4, 4)}, 1),
     ((64, 101), {"dim": 128, "channels": (16, 32), "hidden": 64}, 26)],
)  # fmt: skip
def test_odd_short_and_default_sized_spectrograms(
    shape: tuple[int, int], options: dict, frames_out: int
) -> None:
    torch.manual_seed(0)
    enc = make_encoder(shape, **options)  # the last case is the default configuration
    out = enc(batch(shape))
    assert out.tokens.shape == (4, frames_out, enc.out_dim)
    assert torch.isfinite(out.pooled).all() and torch.isfinite(out.tokens).all()
    assert torch.equal(out.pooled[1], torch.zeros(enc.out_dim))


def test_row_output_does_not_depend_on_other_rows() -> None:
    torch.manual_seed(1)
    enc = make_encoder().eval()
    data = batch(present=torch.ones(3, dtype=torch.bool))
    together = enc(data).pooled
    for i in range(3):
        alone = enc({"mel": data["mel"][i : i + 1], "present": torch.tensor([True])})
        assert_close(alone.pooled[0], together[i])


def test_absent_rows_do_not_affect_present_rows_in_training() -> None:
    torch.manual_seed(2)
    enc = make_encoder()
    data = batch()
    garbage = dict(data, mel=data["mel"].clone())
    garbage["mel"][1] = 1e4
    only_present = {"mel": data["mel"][PRESENT], "present": torch.ones(3, dtype=torch.bool)}
    assert_close(enc(garbage).pooled[PRESENT], enc(only_present).pooled)


def test_batch_with_no_present_row_gives_zeros() -> None:
    enc = make_encoder()
    out = enc(batch(present=torch.zeros(2, dtype=torch.bool)))
    assert torch.equal(out.pooled, torch.zeros(2, 16))
    assert out.tokens.shape == (2, 5, 16) and not out.token_mask.any()


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(3)
    enc = make_encoder(pooling="attention")
    out = enc(batch())
    (out.pooled.square().sum() + out.tokens.square().sum()).backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_learns_high_versus_low_tone() -> None:
    torch.manual_seed(4)
    y = torch.arange(100) % 2
    mel = torch.randn(100, 16, 20) * 0.5
    band = torch.randint(0, 6, (100,)) + 10 * y  # low bands 0-5 or high bands 10-15
    start = torch.randint(0, 12, (100,))
    for i in range(100):
        mel[i, band[i], start[i] : start[i] + 8] += 2.0
    data = {"mel": mel, "present": torch.ones(100, dtype=torch.bool)}
    enc, probe = make_encoder(), nn.Linear(16, 2)
    opt = torch.optim.Adam([*enc.parameters(), *probe.parameters()], lr=0.01)
    for _ in range(30):
        opt.zero_grad()
        nn.functional.cross_entropy(probe(enc(data).pooled), y).backward()
        opt.step()
    enc.eval()
    with torch.no_grad():
        accuracy = (probe(enc(data).pooled).argmax(1) == y).float().mean()
    assert accuracy > 0.9


def test_wrong_number_of_mel_bands_is_rejected() -> None:
    with pytest.raises(ConfigError, match="16 mel bands"):
        make_encoder()(batch((12, 20)))


@pytest.mark.parametrize(
    ("shape", "options"),
    [((3, 16, 16), {}), ((16, 20), {"channels": ()}), ((16, 20), {"channels": (4, -1)}),
     ((16, 20), {"hidden": 0}), ((16, 20), {"pooling": "last"})],
)  # fmt: skip
def test_bad_spec_or_options_raise_config_error(shape: tuple, options: dict) -> None:
    with pytest.raises(ConfigError):
        make_encoder(shape, **options)
