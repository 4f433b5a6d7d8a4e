"""Build the bundled demo data set, in which only fused modalities can name the class.

The image (a real handwritten digit) tells the level, the audio (a DTMF tone) and text
(a noisy word) the group, so every fusion model clearly beats any single modality. Made
locally from one seeded random stream: a seed gives byte-identical files. See
docs/datasets/demo.md.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crossfuse.errors import ConfigError

BUILDER = "crossfuse.data.builtin.demo"
GROUPS = ("red", "blue")
LEVELS = ("low", "mid", "high")
CLASS_NAMES = tuple(f"{g}-{d}" for g in GROUPS for d in LEVELS)  # class k = 3 * g + d
COLUMNS = ("id", "image", "audio", "text", "reading", "label")
MODALITY_COLUMNS = ("image", "audio", "text", "reading")
SOURCE_COLUMNS = ("id", "split", "label", "digit_index", "digit", "shift_x", "shift_y",
                  "dtmf_key", "base_word", "typo")  # fmt: skip
SPLITS = ("train", "valid", "test")
SPLIT_FRACTIONS = (2 / 3, 2 / 15, 1 / 5)  # 1500 rows -> 1000 / 200 / 300
SAMPLE_RATE = 8000
IMAGE_SIZE = 32
READING_MEANS = (0.0, 0.6, 1.2)  # per level
KEY_FREQS = {  # DTMF key -> (row Hz, column Hz)
    "1": (697, 1209), "4": (770, 1209), "7": (852, 1209), "*": (941, 1209),
    "3": (697, 1477), "6": (770, 1477), "9": (852, 1477), "#": (941, 1477),
}  # fmt: skip
GROUP_KEYS = (("1", "4", "7", "*"), ("3", "6", "9", "#"))
GROUP_WORDS = (("red", "rose", "ruby", "crimson"), ("blue", "navy", "teal", "azure"))
NEUTRAL_WORDS = ("item", "thing", "unit", "sample")
_MEDIA_NAME = re.compile(r"demo-\d{5,}\.(png|wav)")


def _keyboard_neighbours() -> dict[str, str]:
    """Letters next to each letter on a staggered QWERTY keyboard (same row or row above/below)."""
    rows, offsets = ("qwertyuiop", "asdfghjkl", "zxcvbnm"), (0.0, 0.25, 0.75)
    pos = {c: (r, j + offsets[r]) for r, row in enumerate(rows) for j, c in enumerate(row)}
    near = {c: "" for c in pos}
    for c, (r, x) in pos.items():
        for o, (r2, x2) in pos.items():
            if (r2 == r and abs(x2 - x) == 1) or (abs(r2 - r) == 1 and abs(x2 - x) < 1):
                near[c] += o
    return near


NEIGHBOURS = _keyboard_neighbours()


@dataclass(frozen=True)
class DemoConfig:
    """Parameters of one demo build; validated on creation."""

    n_rows: int = 1500  # rows over all three splits; at least 60 (ten per class)
    seed: int = 0  # seed of the single random stream; the same seed gives identical files
    missing_rate: float = 0.10  # chance that each of image/audio/text/reading is empty

    def __post_init__(self) -> None:
        if not isinstance(self.n_rows, int) or isinstance(self.n_rows, bool) or self.n_rows < 60:
            raise ConfigError(f"n_rows must be an integer >= 60, got {self.n_rows!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        rate = self.missing_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 0.5:
            raise ConfigError(f"missing_rate must be a number in [0, 0.5), got {rate!r}")


@dataclass(frozen=True)
class DemoBuild:
    """Where a demo build was written and how many rows each split has."""

    out_dir: Path  # the build folder
    train: Path  # train.csv
    valid: Path  # valid.csv
    test: Path  # test.csv
    counts: dict[str, int]  # rows per split, plus "total"
    sources: Path  # sources.csv: the hidden factors (digit, key, word) behind every row


def build_demo(
    out_dir: str | Path,
    *,
    n_rows: int = 1500,
    seed: int = 0,
    missing_rate: float = 0.10,
    progress: bool = False,
) -> DemoBuild:
    """Write the demo tables (CSV) and media (PNG, WAV) into ``out_dir``.

    Raises:
        ConfigError: an argument is out of range, or ``out_dir`` is not empty and not a
            previous demo build (user files are never deleted).
    """
    from sklearn.datasets import load_digits

    cfg = DemoConfig(n_rows=n_rows, seed=seed, missing_rate=missing_rate)
    out = Path(out_dir)
    _prepare_out_dir(out)  # writes a build.json marker, so an interrupted build can be redone
    rng = np.random.default_rng(cfg.seed)
    labels = np.arange(cfg.n_rows) % len(CLASS_NAMES)  # balanced classes
    rng.shuffle(labels)
    split_of = _stratified_split(labels, rng)  # (N,) index into SPLITS
    missing = _missing_mask(cfg.n_rows, cfg.missing_rate, rng)  # (N, 4) bool
    digits = load_digits()
    pools = _digit_pools(digits.target, rng)
    rows: dict[str, list[dict]] = {s: [] for s in SPLITS}
    sources: list[dict] = []
    indices: Iterable[int] = range(cfg.n_rows)
    if progress:
        from rich.progress import track

        indices = track(indices, description="Building demo data set")
    for i in indices:
        split = SPLITS[split_of[i]]
        row, src = _make_row(i, int(labels[i]), split, missing[i], rng, digits, pools, out)
        rows[split].append(row)
        sources.append(src)
    for split in SPLITS:
        _write_csv(out / f"{split}.csv", COLUMNS, rows[split])
    _write_csv(out / "sources.csv", SOURCE_COLUMNS, sources)
    summary = _summary(cfg, rows)
    (out / "build.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out / "README.md").write_text(_readme(summary), encoding="utf-8")
    return DemoBuild(
        out_dir=out, train=out / "train.csv", valid=out / "valid.csv", test=out / "test.csv",
        counts=dict(summary["counts"]), sources=out / "sources.csv",
    )  # fmt: skip


def _prepare_out_dir(out: Path) -> None:
    """Refuse a foreign non-empty folder; clear the media of a previous demo build."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"demo output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        try:
            info = json.loads((out / "build.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            info = None
        if not isinstance(info, dict) or info.get("builder") != BUILDER:
            raise ConfigError(
                f"demo output folder {out} is not empty and is not a previous demo build "
                "(no build.json written by build_demo); choose an empty or new folder"
            )
        for sub in ("images", "audio"):  # stale files of a larger build; only ours
            for path in sorted((out / sub).glob("demo-*")):
                if path.is_file() and _MEDIA_NAME.fullmatch(path.name):
                    path.unlink()
    for sub in ("images", "audio"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    (out / "build.json").write_text(json.dumps({"builder": BUILDER, "complete": False}) + "\n")


def _split_sizes(n: int) -> tuple[int, int, int]:
    n_train, n_valid = round(n * SPLIT_FRACTIONS[0]), round(n * SPLIT_FRACTIONS[1])
    return n_train, n_valid, n - n_train - n_valid


def _stratified_split(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Split index per row: exact split sizes, each class spread in proportion.

    Each class's rows get evenly spaced, jittered positions in [0, 1); all rows are sorted
    by position and cut at the split sizes.
    """
    position = np.empty(len(labels))
    for k in range(len(CLASS_NAMES)):
        idx = np.flatnonzero(labels == k)
        rng.shuffle(idx)
        position[idx] = (np.arange(len(idx)) + rng.random(len(idx))) / len(idx)
    order = np.argsort(position, kind="stable")
    split_of = np.empty(len(labels), dtype=int)
    split_of[order] = np.repeat(np.arange(len(SPLITS)), _split_sizes(len(labels)))
    return split_of


def _missing_mask(n: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """(N, 4) bool, True = empty cell; a row with all four empty is drawn again."""
    mask = rng.random((n, len(MODALITY_COLUMNS))) < rate
    while (full := np.flatnonzero(mask.all(axis=1))).size:
        mask[full] = rng.random((full.size, len(MODALITY_COLUMNS))) < rate
    return mask


def _digit_pools(targets: np.ndarray, rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    """Disjoint per-split pools of load_digits indices, per level (digit % 3, digits 0-8).

    Keeping the pools disjoint means the test images are handwriting never seen in training.
    """
    pools: dict[str, list[list[np.ndarray]]] = {s: [[], [], []] for s in SPLITS}
    for digit in range(9):
        idx = np.flatnonzero(targets == digit)
        rng.shuffle(idx)
        cuts = np.cumsum(_split_sizes(len(idx)))[:-1]
        for split, part in zip(SPLITS, np.split(idx, cuts), strict=True):
            pools[split][digit % 3].append(part)
    return {s: [np.sort(np.concatenate(p)) for p in per] for s, per in pools.items()}


def _make_row(
    i: int, label: int, split: str, missing: np.ndarray, rng: np.random.Generator,
    digits: Any, pools: dict[str, list[np.ndarray]], out: Path,
) -> tuple[dict, dict]:  # fmt: skip
    """One table row (writing its media files) and the hidden factors behind it.

    ``digits`` is scikit-learn's load_digits bunch: ``images`` (n, 8, 8), ``target`` (n,).
    """
    import soundfile as sf
    from PIL import Image

    group, level = divmod(label, 3)
    row_id = f"demo-{i:05d}"
    row = {c: "" for c in COLUMNS} | {"id": row_id, "label": CLASS_NAMES[label]}
    src = dict.fromkeys(SOURCE_COLUMNS, "") | {"id": row_id, "split": split, "label": row["label"]}
    if not missing[0]:
        index = int(rng.choice(pools[split][level]))
        pixels, dx, dy = _digit_image(digits.images[index], rng)  # (32, 32) uint8
        row["image"] = f"images/{row_id}.png"
        Image.fromarray(pixels).save(out / row["image"], format="PNG")
        digit = int(digits.target[index])
        src |= {"digit_index": index, "digit": digit, "shift_x": dx, "shift_y": dy}
    if not missing[1]:
        key = GROUP_KEYS[group][int(rng.integers(4))]
        row["audio"] = f"audio/{row_id}.wav"
        pcm = np.rint(_dtmf_clip(key, rng) * 32767).astype(np.int16)  # (T,)
        sf.write(out / row["audio"], pcm, SAMPLE_RATE, subtype="PCM_16", format="WAV")
        src["dtmf_key"] = key
    if not missing[2]:
        neutral = rng.random() < 0.15
        words = NEUTRAL_WORDS if neutral else GROUP_WORDS[group]
        base = words[int(rng.integers(len(words)))]
        typo = bool(rng.random() < 0.5)
        row["text"] = _typo(base, rng) if typo else base
        src |= {"base_word": base, "typo": int(typo)}
    if not missing[3]:
        row["reading"] = f"{round(rng.normal(READING_MEANS[level], 1.0), 3) + 0.0:.3f}"
    return row, src


def _digit_image(digit: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
    """An 8x8 digit (0-16) upscaled to 32x32, shifted up to 2 px, with pixel noise."""
    from PIL import Image

    grey = Image.fromarray((digit * (255 / 16)).astype(np.float32))  # mode "F"
    big = np.asarray(grey.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR))
    dx, dy = (int(v) for v in rng.integers(-2, 3, size=2))
    shifted = np.pad(big, 2)[2 - dy : 2 - dy + IMAGE_SIZE, 2 - dx : 2 - dx + IMAGE_SIZE]
    noisy = shifted + rng.normal(0.0, 8.0, big.shape)  # (32, 32), moved dx right, dy down
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8), dx, dy


def _dtmf_clip(key: str, rng: np.random.Generator) -> np.ndarray:
    """A noisy 0.5-1.0 s clip holding a 0.3-0.9 s DTMF tone of ``key``, in [-1, 1]."""
    n = round(rng.uniform(0.5, 1.0) * SAMPLE_RATE)
    n_tone = min(n, round(rng.uniform(0.3, min(0.9, n / SAMPLE_RATE)) * SAMPLE_RATE))
    start = int(rng.integers(0, n - n_tone + 1))
    amp = rng.uniform(0.03, 0.2)  # per sine; the tone's power is amp**2
    t = np.arange(n_tone) / SAMPLE_RATE
    phase = rng.uniform(0.0, 2 * math.pi, size=2)
    freqs = KEY_FREQS[key]  # (row Hz, column Hz)
    tone = amp * sum(np.sin(2 * math.pi * f * t + p) for f, p in zip(freqs, phase, strict=True))
    ramp = np.linspace(0.0, 1.0, SAMPLE_RATE // 200)  # 5 ms fades, no clicks
    tone[: ramp.size] *= ramp
    tone[-ramp.size :] *= ramp[::-1]
    clip = np.zeros(n)
    clip[start : start + n_tone] = tone
    snr_db = rng.uniform(0.0, 20.0)
    clip += rng.normal(0.0, amp / 10 ** (snr_db / 20), n)
    if rng.random() < 0.3:  # a dropped 50-150 ms span
        span = round(rng.uniform(0.05, 0.15) * SAMPLE_RATE)
        at = int(rng.integers(0, n - span + 1))
        clip[at : at + span] = 0.0
    return np.clip(clip, -1.0, 1.0)


def _typo(word: str, rng: np.random.Generator) -> str:
    """One keyboard typo: swap two adjacent letters, delete one, or hit a neighbouring key."""
    op = int(rng.integers(3))
    if op == 0:
        i = int(rng.integers(len(word) - 1))
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    i = int(rng.integers(len(word)))
    if op == 1:
        return word[:i] + word[i + 1 :]
    near = NEIGHBOURS[word[i]]
    return word[:i] + near[int(rng.integers(len(near)))] + word[i + 1 :]


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _summary(cfg: DemoConfig, rows: dict[str, list[dict]]) -> dict:
    """build.json: parameters, counts, per-split class balance and empty cells."""
    counts = {s: len(rows[s]) for s in SPLITS} | {"total": cfg.n_rows}
    balance = {s: {c: sum(r["label"] == c for r in rows[s]) for c in CLASS_NAMES} for s in SPLITS}
    empty = {s: {c: sum(r[c] == "" for r in rows[s]) for c in MODALITY_COLUMNS} for s in SPLITS}
    return {
        "builder": BUILDER,
        "complete": True,
        "format": 1,
        "parameters": asdict(cfg) | {"missing_rate": float(cfg.missing_rate)},
        "classes": list(CLASS_NAMES),
        "counts": counts,
        "class_balance": balance,
        "missing_cells": empty,
    }


def _readme(summary: dict) -> str:
    p, c = summary["parameters"], summary["counts"]
    return f"""# crossfuse demo data set

Made by `crossfuse.data.builtin.demo.build_demo` (n_rows={p["n_rows"]}, seed={p["seed"]},
missing_rate={p["missing_rate"]}); the same parameters give byte-identical files. Six classes
`<red|blue>-<low|mid|high>`: `image` (32x32 handwritten digit, value mod 3 = level),
`audio` (8 kHz DTMF tone, red keys 1 4 7 *, blue keys 3 6 9 #), `text` (noisy colour word
of the group) and `reading` (number, mean 0.0/0.6/1.2 by level). Alone each is ambiguous.
Splits, stratified by label: train.csv {c["train"]}, valid.csv {c["valid"]}, test.csv
{c["test"]} rows. sources.csv: the hidden factors of every row, for checks, not training.
build.json: parameters, counts, class balance. See docs/datasets/demo.md in crossfuse.
"""
