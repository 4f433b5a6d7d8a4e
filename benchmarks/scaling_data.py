"""Data for benchmarks/scaling.py: N-row tables whose every row has its own image.

The embedding cache is content-addressed, so a table whose rows share image files
would encode each file once and flatter the embedding step. Here row ``i`` gets MNIST
digit ``i mod 10000`` with the bits of ``i`` stamped into its (blank) top pixel row,
so every row's PNG has distinct bytes up to 2**28 rows. Audio is reused: row ``i``
takes an AV-MNIST clip of the same digit (3,000 clips in all). The numeric column ``x``
is the digit plus unit Gaussian noise: a weak hint (about 44% accuracy at best) that a
tiny trainable part learns within an epoch or two, so validation accuracy shows whether
training works (the frozen encoders keep random weights). Media are written once
under ``WORK/media`` and shared by the tables of every N (``WORK/n{N}/table.csv``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from PIL import Image

from crossfuse.data.builtin.av_mnist import build_av_mnist
from crossfuse.data.builtin.sources import load_mnist

STAMP_BITS = 28  # image row 0 is blank in MNIST; bit b of the row number sets pixel (0, b)
STAMP_VALUE = 128  # grey value of a set bit
PER_FOLDER = 1000  # images per sub-folder, so no folder holds 100k files
_MEDIA_STATE = "media.json"


def stamp(image: np.ndarray, row: int) -> np.ndarray:
    """A copy of a (28, 28) uint8 digit with ``row``'s bits in its top pixel row."""
    if not 0 <= row < 2**STAMP_BITS:
        raise ValueError(f"row {row} does not fit in {STAMP_BITS} stamp bits")
    out = image.copy()
    bits = (row >> np.arange(STAMP_BITS)) & 1  # (28,) least significant bit first
    out[0, :STAMP_BITS] = np.where(bits == 1, STAMP_VALUE, 0)
    return out


def image_path(row: int) -> str:
    """Path of row ``row``'s image relative to the work folder."""
    return f"media/images/{row // PER_FOLDER:04d}/{row:07d}.png"


def build_media(work: Path, rows: int, *, shared: Path) -> dict[str, Any]:
    """Write images for rows ``[0, rows)`` (skipping those already written) and AV-MNIST.

    Returns the media state: rows written so far, clip table (audio path, digit) and
    the MNIST digit of every source image.
    """
    work.mkdir(parents=True, exist_ok=True)
    state_path = work / _MEDIA_STATE
    state = json.loads(state_path.read_text()) if state_path.is_file() else {"rows": 0}
    av = work / "av_mnist"
    if not (av / "manifest.csv").is_file():
        build_av_mnist(av, fsdd_dir=shared / "fsdd", mnist_dir=shared / "mnist")
    images, _ = load_mnist(shared / "mnist")  # (10000, 28, 28) uint8
    for row in range(state["rows"], rows):
        path = work / image_path(row)
        if row % PER_FOLDER == 0 or not path.parent.is_dir():
            path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(stamp(images[row % len(images)], row)).save(path)
    if rows > state["rows"]:
        state["rows"] = rows
        state_path.write_text(json.dumps(state) + "\n")
    return state


def build_table(work: Path, rows: int, *, shared: Path, seed: int = 0) -> Path:
    """``WORK/n{rows}/table.csv``: image, audio, x (digit + noise), label (the image's digit).

    Paths are relative to the table's folder. An existing table is reused as is.
    """
    folder = work / f"n{rows}"
    table = folder / "table.csv"
    if table.is_file():
        return table
    build_media(work, rows, shared=shared)
    _, digits = load_mnist(shared / "mnist")
    manifest = pd.read_csv(work / "av_mnist" / "manifest.csv")
    clips = {d: list(g["audio"]) for d, g in manifest.groupby("label")}  # digit → clip paths
    labels = [int(digits[i % len(digits)]) for i in range(rows)]
    seen = dict.fromkeys(clips, 0)
    audio = []
    for label in labels:  # the k-th row of a digit takes that digit's k-th clip (cycling)
        pool = clips[label]
        audio.append(f"../av_mnist/{pool[seen[label] % len(pool)]}")
        seen[label] += 1
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "image": [f"../{image_path(i)}" for i in range(rows)],
            "audio": audio,
            "x": (np.array(labels) + rng.normal(size=rows)).round(4),
            "label": labels,
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    partial = table.with_suffix(".partial")
    frame.to_csv(partial, index=False)
    partial.replace(table)
    return table


def write_recipe(
    folder: Path, cache_dir: Path, *, batch_size: int = 128, efficientnet: bool = False
) -> Path:
    """``folder/recipe.yaml``: frozen image-cnn and audio-cnn-gru (cached), tiny trainable rest.

    The frozen encoders keep their seeded random initial weights (this measures cost).
    ``efficientnet``: the image input uses the `pretrained` preset's frozen ImageNet
    EfficientNet-Lite0 instead (its processor: RGB at the native 224×224).
    """
    image = {"name": "image-cnn", "dim": 64, "finetune": "frozen", "options": {"widths": [32, 64]}}
    if efficientnet:
        image = {"name": "efficientnet-lite", "finetune": "frozen"}
    recipe = {
        "label": "label",
        "data": {
            "image": {} if efficientnet else {"size": 28, "channels": 1},
            "audio": {
                "sample_rate": 8000,
                "duration": 1.0,
                "n_fft": 256,
                "hop_length": 128,
                "n_mels": 40,
            },
        },
        "model": {
            "fusion": "concat",
            "hidden": 64,
            "encoders": {
                "image": image,
                "audio": {
                    "name": "audio-cnn-gru",
                    "dim": 64,
                    "finetune": "frozen",
                    "options": {"channels": [16, 32], "hidden": 64},
                },
                "tabular": {"dim": 16},
            },
        },
        "train": {
            "batch_size": batch_size,
            "lr": 0.003,
            "seed": 0,
            "cache_dir": str(cache_dir),
        },
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path
