"""The ``image-cnn`` encoder: sizes, absent rows, batch independence, gradients, learnability."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from crossfuse.encoders import InputSpec, create_encoder
from crossfuse.encoders.image import ImageCNNEncoder
from crossfuse.errors import ConfigError

assert_close = torch.testing.assert_close
PRESENT = torch.tensor([True, False, True])


def make_encoder(shape: tuple[int, int, int] = (3, 16, 16), **options) -> ImageCNNEncoder:
    spec = InputSpec(name="photo", modality="image", shape=shape)
    return create_encoder("image-cnn", spec, **{"dim": 16, "widths": (8, 16), **options})


def batch(size: int = 16, channels: int = 3, present: torch.Tensor = PRESENT) -> dict:
    pixels = torch.randn(len(present), channels, size, size) * present.view(-1, 1, 1, 1)
    return {"pixels": pixels, "present": present}


@pytest.mark.parametrize(("size", "n_tokens"), [(16, 16), (64, 64)])
def test_shapes_and_absent_rows(size: int, n_tokens: int) -> None:
    torch.manual_seed(0)
    enc = make_encoder((3, size, size))  # two blocks: 16 → 4×4 map, 64 → 16×16 → 8×8 grid
    out = enc(batch(size))
    assert enc.out_dim == 16
    assert out.pooled.shape == (3, 16)
    assert out.tokens.shape == (3, n_tokens, 16)
    assert torch.equal(out.token_mask, PRESENT.view(-1, 1).expand(3, n_tokens))
    assert torch.equal(out.present, PRESENT)
    assert torch.equal(out.pooled[1], torch.zeros(16))
    assert torch.equal(out.tokens[1], torch.zeros(n_tokens, 16))
    assert torch.isfinite(out.pooled).all() and torch.isfinite(out.tokens).all()


def test_default_widths_on_a_grayscale_image_and_a_tiny_one() -> None:
    torch.manual_seed(0)
    enc = create_encoder("image-cnn", InputSpec(name="p", modality="image", shape=(1, 32, 32)))
    out = enc(batch(32, channels=1))
    assert out.pooled.shape == (3, 128) and out.tokens.shape == (3, 16, 128)  # 32 → 4×4
    tiny = make_encoder((1, 3, 3), widths=(4, 4, 4))  # halves only while ≥ 2 pixels
    out = tiny(batch(3, channels=1))
    assert out.tokens.shape == (3, 1, 16) and torch.isfinite(out.pooled).all()


def test_token_grid_caps_the_number_of_tokens() -> None:
    enc = make_encoder((3, 64, 64), token_grid=4)
    assert enc(batch(64)).tokens.shape == (3, 16, 16)


def test_row_output_does_not_depend_on_other_rows() -> None:
    torch.manual_seed(1)
    enc = make_encoder().eval()
    data = batch(present=torch.ones(3, dtype=torch.bool))
    together = enc(data).pooled
    for i in range(3):
        alone = enc({"pixels": data["pixels"][i : i + 1], "present": torch.tensor([True])})
        assert_close(alone.pooled[0], together[i])


def test_absent_rows_never_reach_batch_norm_in_training() -> None:
    torch.manual_seed(2)
    enc = make_encoder()
    data = batch()
    garbage = dict(data, pixels=data["pixels"].clone())
    garbage["pixels"][1] = 1e4
    only_present = {"pixels": data["pixels"][PRESENT], "present": torch.ones(2, dtype=bool)}
    assert_close(enc(garbage).pooled[PRESENT], enc(only_present).pooled)
    bn = enc.features[1]
    assert bn.running_mean.abs().max() < 10  # the 1e4 row did not enter the statistics


def test_batch_with_no_present_row_gives_zeros() -> None:
    enc = make_encoder()
    out = enc(batch(present=torch.zeros(3, dtype=torch.bool)))
    assert torch.equal(out.pooled, torch.zeros(3, 16))
    assert out.tokens.shape == (3, 16, 16) and not out.token_mask.any()


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(3)
    enc = make_encoder()
    out = enc(batch())
    (out.pooled.square().sum() + out.tokens.square().sum()).backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_learns_which_quadrant_is_bright() -> None:
    torch.manual_seed(4)
    y = torch.arange(100) % 2
    pixels = torch.randn(100, 1, 16, 16) * 0.5
    pixels[y == 0, :, :8, :8] += 1.0
    pixels[y == 1, :, 8:, 8:] += 1.0
    data = {"pixels": pixels, "present": torch.ones(100, dtype=torch.bool)}
    enc, probe = make_encoder((1, 16, 16), widths=(4, 8)), nn.Linear(16, 2)
    opt = torch.optim.Adam([*enc.parameters(), *probe.parameters()], lr=0.01)
    for _ in range(30):
        opt.zero_grad()
        nn.functional.cross_entropy(probe(enc(data).pooled), y).backward()
        opt.step()
    enc.eval()
    with torch.no_grad():
        accuracy = (probe(enc(data).pooled).argmax(1) == y).float().mean()
    assert accuracy > 0.9


@pytest.mark.parametrize(
    ("shape", "options"),
    [((16, 16), {}), ((3, 16, 16), {"widths": ()}), ((3, 16, 16), {"widths": (8, 0)}),
     ((3, 16, 16), {"dim": 0}), ((3, 16, 16), {"token_grid": 0})],
)  # fmt: skip
def test_bad_spec_or_options_raise_config_error(shape: tuple, options: dict) -> None:
    with pytest.raises(ConfigError):
        make_encoder(shape, **options)
