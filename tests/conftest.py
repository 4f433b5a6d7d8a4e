"""Shared fixtures: tiny tables with real media files written to a temp folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The shared real data sets ($CROSSFUSE_DATA or ../shared/data beside the repo)."""
    return Path(os.environ.get("CROSSFUSE_DATA", REPO.parent / "shared" / "data"))


def write_png(path: Path, value: int, size: int = 16) -> str:
    arr = np.full((size, size), value, dtype=np.uint8)
    arr[: size // 2, : size // 2] = 255 - value
    Image.fromarray(arr, mode="L").save(path)
    return path.name


def write_wav(path: Path, freq: float, sr: int = 8000, seconds: float = 0.25) -> str:
    t = np.arange(int(sr * seconds)) / sr
    sf.write(path, 0.5 * np.sin(2 * np.pi * freq * t), sr, subtype="PCM_16")
    return path.name


@pytest.fixture
def media_table(tmp_path: Path) -> Path:
    """A clean 12-row table with text, image, audio, numeric, categorical columns and a label."""
    rows = []
    for i in range(12):
        label = ["cat", "dog"][i % 2]
        rows.append(
            {
                "id": f"row-{i:03d}",
                "caption": f"a photo of a {label} number {i}" if i != 3 else "",
                "image": write_png(tmp_path / f"img{i}.png", 40 + 10 * i),
                "sound": write_wav(tmp_path / f"snd{i}.wav", 200 + 50 * i),
                "weight": 1.5 * i,
                "colour": ["red", "green", "blue"][i % 3],
                "label": label,
            }
        )
    df = pd.DataFrame(rows)
    path = tmp_path / "table.csv"
    df.to_csv(path, index=False)
    return path


@pytest.fixture
def bad_table(tmp_path: Path) -> Path:
    """A table whose rows 1–8 each hold one kind of bad cell (the rest of the row is good)."""
    (tmp_path / "media").mkdir()
    m = tmp_path / "media"
    good_png = [write_png(m / f"ok{i}.png", 25 * i) for i in range(10)]
    good_wav = [write_wav(m / f"ok{i}.wav", 300 + 40 * i) for i in range(10)]
    # corrupt PNG: a real PNG cut in half
    data = (m / good_png[0]).read_bytes()
    (m / "corrupt.png").write_bytes(data[: len(data) // 2])
    (m / "empty.wav").write_bytes(b"")
    wav = (m / good_wav[0]).read_bytes()
    (m / "truncated.wav").write_bytes(wav[: len(wav) // 2])
    (m / "notes.wav").write_text("this is a text file, not audio\n")
    (m / "a_directory.png").mkdir()
    images = [f"media/{p}" for p in good_png]
    sounds = [f"media/{p}" for p in good_wav]
    texts = [f"sample text number {i}" for i in range(10)]
    numbers: list[object] = [float(i) for i in range(10)]
    images[1] = "media/corrupt.png"
    sounds[2] = "media/empty.wav"
    sounds[3] = "media/truncated.wav"
    sounds[4] = "media/notes.wav"
    texts[5] = "   "
    images[6] = "media/missing.png"
    images[7] = "media/a_directory.png"
    numbers[8] = "twelve"
    df = pd.DataFrame(
        {
            "text": texts,
            "image": images,
            "audio": sounds,
            "value": numbers,
            "label": ["a", "b"] * 5,
        }
    )
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False)
    return path


TINY_CONFIG = {
    "data": {"image": {"size": 8, "channels": 1}},
    "model": {
        "hidden": 16,
        "encoders": {
            "text": {"dim": 16, "options": {"embed_dim": 8, "hidden": 8}},
            "image": {"dim": 16, "options": {"widths": [8]}},
            "tabular": {"dim": 16},
        },
    },
    "train": {"epochs": 6, "batch_size": 16, "lr": 5e-3, "patience": 0},
}


def make_toy_table(folder: Path, n: int = 160, seed: int = 0) -> Path:
    """A learnable toy: class "a"/"b" shows in image brightness, a word and a number.

    Also has ``score``, a regression target (2·x plus noise), for multitask tests.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        cls = i % 2
        pixels = np.clip(rng.normal(170 if cls else 70, 40, (8, 8)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / f"toy{i}.png")
        word = ["alpha", "beta"][cls] if rng.random() < 0.8 else ["alpha", "beta"][1 - cls]
        x = rng.normal(1.0 if cls else -1.0, 1.0)
        rows.append(
            {
                "note": f"{word} item {rng.integers(0, 5)}",
                "picture": f"toy{i}.png",
                "x": round(float(x), 4),
                "label": ["a", "b"][cls],
                "score": round(float(2 * x + rng.normal(0, 0.1)), 4),
            }
        )
    path = folder / "toy.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def toy_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_table(tmp_path_factory.mktemp("toy"))


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny test models run fastest on one thread, and OpenMP workers stall on busy CPUs."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
