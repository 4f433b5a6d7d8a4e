"""The ``hf-vision`` encoder on tiny ViT, ConvNeXt and CLIP models saved to a temp folder."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from PIL import Image

from crossfuse.data.hf_image_processor import HFImageProcessor, HFImageProcessorConfig
from crossfuse.encoders import InputSpec, create_encoder
from crossfuse.encoders.hf_vision import HFVisionEncoder
from crossfuse.errors import ConfigError

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No network: hub ids must fail fast instead of retrying a download."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Tiny checkpoints + image processors: ViT (with/without pooler), ConvNeXt, CLIP."""
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        ConvNextConfig,
        ConvNextImageProcessor,
        ConvNextModel,
        ViTConfig,
        ViTImageProcessor,
        ViTModel,
    )

    root = tmp_path_factory.mktemp("hf_vision")
    torch.manual_seed(0)
    vit = ViTConfig(image_size=32, patch_size=8, intermediate_size=64, **TINY)
    ViTModel(vit).save_pretrained(root / "vit")
    ViTModel(vit, add_pooling_layer=False).save_pretrained(root / "vit-nopool")
    for name in ("vit", "vit-nopool"):
        ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(root / name)
    cnx = ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, image_size=32)
    ConvNextModel(cnx).save_pretrained(root / "convnext")
    ConvNextImageProcessor(size={"shortest_edge": 32}).save_pretrained(root / "convnext")
    clip = CLIPConfig(
        text_config={"vocab_size": 50, "intermediate_size": 64, **TINY},
        vision_config={"image_size": 32, "patch_size": 8, "intermediate_size": 64, **TINY},
        projection_dim=16,
    )
    CLIPModel(clip).save_pretrained(root / "clip")
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(root / "clip")
    return {name: str(root / name) for name in ("vit", "vit-nopool", "convnext", "clip")}


@pytest.fixture(scope="module")
def pngs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Real PNG files: an RGB 50×20 gradient and a grayscale 24×24 checkerboard."""
    root = tmp_path_factory.mktemp("pngs")
    rgb = np.zeros((20, 50, 3), np.uint8)
    rgb[..., 0] = np.linspace(0, 255, 50, dtype=np.uint8)
    rgb[..., 2] = 200
    gray = (np.indices((24, 24)).sum(0) % 2 * 255).astype(np.uint8)
    Image.fromarray(rgb).save(root / "rgb.png")
    Image.fromarray(gray, mode="L").save(root / "gray.png")
    return [root / "rgb.png", root / "gray.png"]


def encode(model: str, cells: list, **options) -> tuple[HFVisionEncoder, dict, object]:
    """Process ``cells`` (None = absent) with the hf-image processor and encode them."""
    proc = HFImageProcessor(HFImageProcessorConfig(model=model))
    batch = proc.collate([None if c is None else proc.process(c) for c in cells])
    spec = InputSpec("photo", "image", shape=proc.output_shape, processor="hf-image")
    enc = HFVisionEncoder(spec, model=model, **options).eval()
    with torch.no_grad():
        return enc, batch, enc(batch)


def loss(pooled: torch.Tensor) -> torch.Tensor:
    """A random projection (a plain sum of LayerNorm outputs has zero gradient)."""
    return (pooled * torch.randn(pooled.shape, generator=torch.Generator().manual_seed(0))).sum()


def test_vit_pooler_output_on_real_pngs(models: dict, pngs: list) -> None:
    from transformers import ViTModel

    enc, batch, out = encode(models["vit"], [pngs[0], None, pngs[1]])
    assert enc.pooling == "pooler" and enc.out_dim == 32 and enc.pretrained
    assert batch["pixel_values"].shape == (3, 3, 32, 32)
    assert out.pooled.shape == (3, 32) and out.tokens.shape == (3, 17, 32)  # CLS + 4×4 patches
    assert out.token_mask.sum(1).tolist() == [17, 0, 17]
    assert torch.equal(out.pooled[1], torch.zeros(32))
    assert torch.equal(out.tokens[1], torch.zeros(17, 32))
    reference = ViTModel.from_pretrained(models["vit"]).eval()
    with torch.no_grad():
        ref = reference(pixel_values=batch["pixel_values"][[0, 2]])
    torch.testing.assert_close(out.pooled[[0, 2]], ref.pooler_output, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.tokens[[0, 2]], ref.last_hidden_state, atol=1e-5, rtol=0)


def test_vit_without_trained_pooler_defaults_to_mean_and_cls_works(models, pngs) -> None:
    enc, _, out = encode(models["vit-nopool"], [pngs[0], pngs[1]])
    assert enc.pooling == "mean"
    torch.testing.assert_close(out.pooled, out.tokens.mean(1))
    enc, _, out = encode(models["vit"], [pngs[0], pngs[1]], pooling="cls")
    torch.testing.assert_close(out.pooled, out.tokens[:, 0])
    assert not any(enc.model.pooler.parameters())  # unused, so dropped: no dead weights
    assert [type(b).__name__ for b in enc.blocks()] == [
        "ViTEmbeddings",
        "ViTLayer",
        "ViTLayer",
        "LayerNorm",
    ]


def test_convnext_feature_map_becomes_tokens(models: dict, pngs: list) -> None:
    enc, _, out = encode(models["convnext"], [None, pngs[0], pngs[1]])
    assert enc.pooling == "pooler" and enc.out_dim == 16
    assert out.tokens.shape == (3, 16, 16)  # 32 px / stem 4 / stage 2 = 4×4 cells of 16 channels
    assert out.token_mask.sum(1).tolist() == [0, 16, 16]
    assert torch.equal(out.pooled[0], torch.zeros(16))
    norm = enc.model.layernorm
    with torch.no_grad():
        torch.testing.assert_close(out.pooled[1:], norm(out.tokens[1:].mean(1)))
    names = [type(b).__name__ for b in enc.blocks()]
    assert names == ["ConvNextEmbeddings", "ConvNextStage", "ConvNextStage", "LayerNorm"]
    with pytest.raises(ConfigError, match="class token"):
        encode(models["convnext"], [pngs[0]], pooling="cls")


def test_clip_checkpoint_gives_its_vision_tower(models: dict, pngs: list) -> None:
    from transformers import CLIPVisionModel

    enc, _, out = encode(models["clip"], [pngs[1], None])
    assert isinstance(enc.model, CLIPVisionModel)
    assert enc.pooling == "pooler" and out.tokens.shape == (2, 17, 32)
    names = [type(b).__name__ for b in enc.blocks()]
    assert names == ["CLIPVisionEmbeddings", "LayerNorm", *["CLIPEncoderLayer"] * 2, "LayerNorm"]


@pytest.mark.parametrize("name", ["vit", "convnext"])
def test_gradients_reach_the_model(models: dict, pngs: list, name: str) -> None:
    proc = HFImageProcessor(HFImageProcessorConfig(model=models[name]))
    batch = proc.collate([proc.process(pngs[0]), None, proc.process(pngs[1])])
    spec = InputSpec("photo", "image", shape=proc.output_shape, processor="hf-image")
    enc = HFVisionEncoder(spec, model=models[name])
    loss(enc(batch).pooled).backward()
    for pname, p in enc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


def test_all_rows_absent(models: dict) -> None:
    _, _, out = encode(models["vit"], [None, None])
    assert out.pooled.shape == (2, 32) and not out.pooled.any()
    assert out.tokens.shape == (2, 17, 32) and not out.token_mask.any()


def test_registry_processor_choice_and_errors(models: dict, tmp_path: Path) -> None:
    spec = InputSpec("photo", "image", shape=(3, 32, 32), processor="hf-image")
    enc = create_encoder("hf-vision", spec, model=models["vit"], dim=64)
    assert isinstance(enc, HFVisionEncoder) and enc.out_dim == 32
    choice = HFVisionEncoder.processor_choice({"model": models["vit"]})
    assert choice == ("hf-image", {"model": models["vit"]})
    with pytest.raises(ConfigError, match="needs a model"):
        HFVisionEncoder.processor_choice({})
    with pytest.raises(ConfigError, match="needs a model"):
        HFVisionEncoder(spec)
    with pytest.raises(ConfigError, match="pooling"):
        HFVisionEncoder(spec, model=models["vit"], pooling="max")
    with pytest.raises(ConfigError, match="'hf-image' column processor"):
        HFVisionEncoder(InputSpec("p", "image", shape=(3, 32, 32), processor="image"), model="x")
    with pytest.raises(ConfigError) as err:
        HFVisionEncoder(spec, model="nobody-xyz/vit-missing")
    assert "nobody-xyz/vit-missing" in str(err.value) and "local directory" in str(err.value)
    with pytest.raises(ConfigError, match="cannot encode images of shape"):
        HFVisionEncoder(InputSpec("p", "image", shape=(3, 20, 20)), model=models["vit"])
