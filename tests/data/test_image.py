"""Tests for image decoding and preprocessing (crossfuse.data.image)."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, features

from crossfuse.data.image import ImageConfig, ImageProcessor, decode_image
from crossfuse.data.processor import processor_class
from crossfuse.errors import CellError, ConfigError

HAS_WEBP = features.check("webp")
W, H = 7, 5  # non-square, so a swapped width/height shows


def _rgb(w: int = W, h: int = H, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _source(mode: str) -> tuple[Image.Image, dict]:
    """A W x H image in ``mode`` and the save options it needs."""
    if mode == "P+transparency":
        return Image.fromarray(_rgb()).convert("P"), {"transparency": 0}
    if mode == "I;16":
        return Image.fromarray(np.arange(W * H, dtype=np.uint16).reshape(H, W) * 1000), {}
    if mode == "I;16B":
        data = (np.arange(W * H, dtype=">u2") * 1000).tobytes()
        return Image.frombytes("I;16B", (W, H), data), {}
    if mode == "I":
        return Image.fromarray(np.arange(W * H, dtype=np.int32).reshape(H, W) * 100_000), {}
    if mode == "RGBA":  # varying alpha, or WebP would store it as RGB
        alpha = np.linspace(0, 255, W * H).reshape(H, W, 1).astype(np.uint8)
        return Image.fromarray(np.concatenate([_rgb(), alpha], axis=2)), {}
    if mode == "F":
        return Image.fromarray(np.linspace(-2, 3, W * H, dtype=np.float32).reshape(H, W)), {}
    return Image.fromarray(_rgb()).convert(mode), {}


CASES = [
    ("L", "PNG"),
    ("L", "JPEG"),
    ("LA", "PNG"),
    ("1", "PNG"),
    ("1", "BMP"),
    ("P", "PNG"),
    ("P", "GIF"),
    ("P+transparency", "PNG"),
    ("RGB", "PNG"),
    ("RGB", "JPEG"),
    ("RGB", "BMP"),
    ("RGBA", "PNG"),
    ("CMYK", "JPEG"),
    ("CMYK", "TIFF"),
    ("I;16", "PNG"),
    ("I;16B", "TIFF"),
    ("I", "TIFF"),
    ("F", "TIFF"),
    pytest.param("RGB", "WEBP", marks=pytest.mark.skipif(not HAS_WEBP, reason="no WebP")),
    pytest.param("RGBA", "WEBP", marks=pytest.mark.skipif(not HAS_WEBP, reason="no WebP")),
]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(("mode", "fmt"), CASES)
def test_every_mode_and_format_decodes(tmp_path, mode, fmt, channels):
    img, opts = _source(mode)
    path = tmp_path / f"img.{fmt.lower()}"
    img.save(path, fmt, **opts)
    with Image.open(path) as saved:  # the file really holds the mode under test
        assert saved.mode == mode.split("+")[0]
        assert ("transparency" in saved.info) == mode.endswith("transparency")
    out = decode_image(path, channels=channels)
    assert out.mode == ("L" if channels == 1 else "RGB")
    assert out.size == (W, H)
    assert decode_image(path.read_bytes(), channels=channels).tobytes() == out.tobytes()


def test_pil_input_is_not_modified():
    img = Image.fromarray(_rgb()).convert("RGBA")
    out = decode_image(img, channels=1)
    assert img.mode == "RGBA" and out.mode == "L"


@pytest.mark.parametrize(("orientation", "red_at"), [(6, "top"), (8, "bottom")])
def test_exif_orientation_is_applied(tmp_path, orientation, red_at):
    arr = np.zeros((20, 40, 3), dtype=np.uint8)
    arr[:, :20] = (255, 0, 0)  # left half red
    arr[:, 20:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "rotated.jpg"
    Image.fromarray(arr).save(path, "JPEG", exif=exif.tobytes(), quality=95)
    out = np.asarray(decode_image(path))
    assert out.shape == (40, 20, 3)  # displayed upright: 20 wide, 40 tall
    top, bottom = out[5, 10], out[35, 10]
    red, blue = (top, bottom) if red_at == "top" else (bottom, top)
    assert red[0] > 200 and red[2] < 60
    assert blue[2] > 200 and blue[0] < 60


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16bit_range_is_stretched_not_clipped(tmp_path, fmt):
    values = np.array([[1000, 2000, 3000, 4000, 5000]], dtype=np.uint16)
    path = tmp_path / f"deep.{fmt.lower()}"
    Image.fromarray(values).save(path, fmt)
    out = np.asarray(decode_image(path, channels=1))
    assert out.tolist() == [[0, 64, 128, 191, 255]]


def test_float_image_with_negative_values_is_stretched():
    img = Image.fromarray(np.array([[-1.0, 0.0, 1.0]], dtype=np.float32))
    assert np.asarray(decode_image(img, channels=1)).tolist() == [[0, 128, 255]]


def test_transparency_becomes_white():
    arr = np.zeros((1, 3, 4), dtype=np.uint8)
    arr[0, 0] = (0, 0, 0, 0)  # fully transparent black
    arr[0, 1] = (255, 0, 0, 255)  # opaque red
    arr[0, 2] = (255, 0, 0, 128)  # half-transparent red
    out = np.asarray(decode_image(Image.fromarray(arr, "RGBA")))
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 1].tolist() == [255, 0, 0]
    assert out[0, 2, 0] == 255 and 120 <= out[0, 2, 1] <= 135


def test_palette_transparency_becomes_white(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([10, 20, 30, 200, 0, 0] + [0] * 762)
    img.putpixel((1, 0), 1)
    path = tmp_path / "p.png"
    img.save(path, transparency=0)
    assert np.asarray(decode_image(path)).tolist() == [[[255, 255, 255], [200, 0, 0]]]


def test_cmyk_colours_are_converted(tmp_path):
    path = tmp_path / "cmyk.tif"
    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(path)  # pure red
    assert np.asarray(decode_image(path))[0, 0].tolist() == [255, 0, 0]


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (6, 4), c) for c in [(255, 0, 0), (0, 0, 255)]]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(path) as saved:
        assert saved.n_frames == 2
    assert np.asarray(decode_image(path))[2, 3].tolist() == [255, 0, 0]


def _png(size: int = 32) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_rgb(size, size)).save(buf, "PNG")
    return buf.getvalue()


def _bomb_png() -> bytes:
    """A PNG whose header claims 30000 x 30000 pixels."""
    data = bytearray(_png(1))
    data[16:24] = struct.pack(">II", 30000, 30000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_rgb(32, 32)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("truncated.png", _png()[:400], r"cannot decode image: .*truncated"),
        ("truncated.jpg", _jpeg()[: len(_jpeg()) // 2], r"cannot decode image: .*truncated"),
        ("notes.png", b"just some text, not pixels\n", r"not a recognised image format"),
        ("bomb.png", _bomb_png(), r"too many pixels"),
        ("empty.png", b"", r"empty \(0 bytes\)"),
        ("missing.png", None, r"file not found"),
        ("folder.png", "dir", r"directory"),
    ],
)
def test_bad_files_raise_cell_error(tmp_path, name, content, reason):
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(CellError, match=reason) as info:
        ImageProcessor().process(name, base_dir=tmp_path)
    assert info.value.file == str(path)


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        (b"", r"no bytes"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, r"cannot decode image"),
        (np.zeros((4, 4), dtype=np.float32), r"uint8 array"),
        (np.zeros((4, 4, 2), dtype=np.uint8), r"uint8 array"),
        (np.zeros((0, 4), dtype=np.uint8), r"uint8 array"),
        (None, r"empty cell"),
    ],
)
def test_bad_in_memory_cells_raise_cell_error(cell, reason):
    with pytest.raises(CellError, match=reason):
        ImageProcessor().process(cell)


@pytest.fixture
def white_black(tmp_path) -> tuple[Path, Path]:
    white, black = tmp_path / "white.png", tmp_path / "black.png"
    Image.new("RGB", (10, 10), (255, 255, 255)).save(white)
    Image.new("RGB", (10, 10), (0, 0, 0)).save(black)
    return white, black


MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


@pytest.mark.parametrize(
    ("normalize", "white", "black"),
    [
        ("unit", [1.0] * 3, [-1.0] * 3),
        ("none", [1.0] * 3, [0.0] * 3),
        ("tflite", [(255 - 127) / 128] * 3, [-127 / 128] * 3),
        ("imagenet", list((1 - MEAN) / STD), list(-MEAN / STD)),
    ],
)
def test_normalize_modes(white_black, normalize, white, black):
    proc = ImageProcessor(ImageConfig(size=8, normalize=normalize))
    for path, expected in zip(white_black, (white, black), strict=True):
        x = proc.process(path)
        assert x.shape == (3, 8, 8) and x.dtype == torch.float32
        assert torch.allclose(x, torch.tensor(expected, dtype=torch.float32)[:, None, None])


def test_grayscale_output_and_imagenet_gray_stats(white_black):
    proc = ImageProcessor(ImageConfig(size=6, channels=1, normalize="imagenet"))
    assert proc.output_shape == (1, 6, 6)
    x = proc.process(white_black[0])
    assert x.shape == (1, 6, 6)
    assert torch.allclose(x, torch.full_like(x, (1 - MEAN.mean()) / STD.mean()))


def test_pad_keeps_aspect_with_background_bars():
    wide = Image.new("RGB", (40, 20), (255, 255, 255))
    x = ImageProcessor(ImageConfig(size=16, normalize="none")).process(wide)
    assert torch.all(x[:, :4] == 0) and torch.all(x[:, 12:] == 0)  # bars top and bottom
    assert torch.all(x[:, 4:12] == 1)
    tall = Image.new("L", (10, 20), 255)
    cfg = ImageConfig(size=16, channels=1, normalize="none", background=51)
    y = ImageProcessor(cfg).process(tall)
    assert torch.allclose(y[:, :, :4], torch.tensor(0.2)) and torch.all(y[:, :, 4:12] == 1)


def test_stretch_and_center_crop_fill_the_frame():
    arr = np.zeros((20, 40), dtype=np.uint8)
    arr[:, 20:] = 255  # left half black, right half white
    stretch = ImageProcessor(ImageConfig(size=16, channels=1, resize="stretch", normalize="none"))
    crop = ImageProcessor(ImageConfig(size=16, channels=1, resize="center-crop", normalize="none"))
    s, c = stretch.process(arr), crop.process(arr)
    assert s.shape == c.shape == (1, 16, 16)
    assert torch.all(s[0, :, 0] == 0) and torch.all(s[0, :, -1] == 1)  # no bars
    assert torch.all(c[0, :, 0] == 0) and torch.all(c[0, :, -1] == 1)
    left, right = c[0, 0, :7], c[0, 0, 9:]  # the crop is the middle square: black | white
    assert torch.all(left == 0) and torch.all(right == 1)


def test_in_memory_inputs_match_the_file(tmp_path):
    arr = _rgb(12, 9, seed=3)
    path = tmp_path / "a.png"
    Image.fromarray(arr).save(path)
    proc = ImageProcessor(ImageConfig(size=8))
    ref = proc.process(path)
    with Image.open(path) as opened:
        for cell in (path.read_bytes(), bytearray(path.read_bytes()), opened, arr):
            assert torch.equal(proc.process(cell), ref)
    gray = arr[:, :, 0]
    g = proc.process(gray)  # (H, W) → RGB with equal channels
    assert torch.equal(g[0], g[1]) and torch.equal(g, proc.process(gray[:, :, None]))


def test_relative_path_resolved_against_base_dir(tmp_path):
    (tmp_path / "imgs").mkdir()
    Image.fromarray(_rgb(seed=4)).save(tmp_path / "imgs" / "a.png")
    proc = ImageProcessor(ImageConfig(size=8))
    rel = proc.process("imgs/a.png", base_dir=tmp_path)
    assert torch.equal(rel, proc.process(str(tmp_path / "imgs" / "a.png")))
    with pytest.raises(CellError, match="file not found"):
        proc.process("imgs/a.png", base_dir=tmp_path / "elsewhere")


def test_augmentation_is_reproducible_and_train_only():
    img = Image.fromarray(_rgb(24, 20, seed=5))
    aug = ImageProcessor(ImageConfig(size=16, augment=True))
    plain = ImageProcessor(ImageConfig(size=16)).process(img)
    a1 = aug.process(img, train=True, rng=np.random.default_rng(7))
    a2 = aug.process(img, train=True, rng=np.random.default_rng(7))
    b = aug.process(img, train=True, rng=np.random.default_rng(8))
    assert torch.equal(a1, a2)
    assert not torch.equal(a1, b) and not torch.equal(a1, plain)
    assert a1.shape == (3, 16, 16) and a1.min() >= -1 and a1.max() <= 1
    assert torch.equal(aug.process(img, train=False, rng=np.random.default_rng(7)), plain)
    no_aug = ImageProcessor(ImageConfig(size=16))
    assert torch.equal(no_aug.process(img, train=True, rng=np.random.default_rng(7)), plain)
    assert aug.process(img, train=True).shape == (3, 16, 16)  # rng=None draws its own


@pytest.mark.parametrize("hflip", [False, True])
def test_hflip_only_when_enabled(hflip):
    img = Image.fromarray(_rgb(16, 16, seed=6))
    cfg = dict(size=16, crop_scale=(1, 1), crop_ratio=(1, 1), rotation=0, brightness=0, contrast=0)
    plain = ImageProcessor(ImageConfig(**cfg)).process(img)
    aug = ImageProcessor(ImageConfig(**cfg, augment=True, hflip=hflip))
    outs = [aug.process(img, train=True, rng=np.random.default_rng(s)) for s in range(12)]
    flipped = [torch.equal(o, plain.flip(-1)) for o in outs]
    assert all(torch.equal(o, plain) or f for o, f in zip(outs, flipped, strict=True))
    assert any(flipped) == hflip and (all(flipped) is False)


def test_collate_stacks_and_marks_absent():
    proc = ImageProcessor(ImageConfig(size=4, channels=1))
    t = proc.process(np.full((3, 3), 255, dtype=np.uint8))
    batch = proc.collate([t, None, t])
    assert batch["pixels"].shape == (3, 1, 4, 4) and batch["pixels"].dtype == torch.float32
    assert batch["present"].tolist() == [True, False, True]
    assert torch.equal(batch["pixels"][0], t) and torch.all(batch["pixels"][1] == 0)


def test_state_round_trip():
    cfg = ImageConfig(size=12, channels=1, resize="stretch", normalize="tflite", augment=True)
    proc = ImageProcessor(cfg)
    state = json.loads(json.dumps(proc.get_state()))
    again = processor_class("image").from_state(state)
    assert isinstance(again, ImageProcessor) and again.config == cfg
    img = Image.fromarray(_rgb(seed=9))
    for train in (False, True):
        r1, r2 = np.random.default_rng(1), np.random.default_rng(1)
        assert torch.equal(
            proc.process(img, train=train, rng=r1), again.process(img, train=train, rng=r2)
        )
    with pytest.raises(ConfigError, match="invalid image processor state"):
        ImageProcessor.from_state({"config": {"sise": 3}})


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"size": 0}, "size"),
        ({"size": 16.0}, "size"),
        ({"size": True}, "size"),
        ({"channels": 2}, "channels"),
        ({"channels": 4}, "channels"),
        ({"resize": "fit"}, "resize"),
        ({"normalize": "zscore"}, "normalize"),
        ({"background": 256}, "background"),
        ({"crop_scale": (0.9, 0.5)}, "crop_scale"),
        ({"crop_scale": (0.0, 1.0)}, "crop_scale"),
        ({"crop_scale": (0.5, 1.2)}, "crop_scale"),
        ({"crop_scale": 0.8}, "crop_scale"),
        ({"crop_ratio": (2.0, 1.0)}, "crop_ratio"),
        ({"rotation": -1}, "rotation"),
        ({"rotation": 270}, "rotation"),
        ({"brightness": 1.0}, "brightness"),
        ({"contrast": -0.1}, "contrast"),
    ],
)
def test_config_validation(kwargs, field):
    with pytest.raises(ConfigError, match=f"image.{field}"):
        ImageConfig(**kwargs)
