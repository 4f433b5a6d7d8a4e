"""Tests for the bundled demo data set builder (crossfuse.data.builtin.demo)."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from sklearn.datasets import load_digits

from crossfuse.data.builtin.demo import DemoBuild, build_demo
from crossfuse.data.media import resolve_media_path
from crossfuse.errors import ConfigError

COLUMNS = ["id", "image", "audio", "text", "reading", "label"]
MEDIA = ("image", "audio", "text", "reading")
CLASSES = [f"{g}-{d}" for g in ("red", "blue") for d in ("low", "mid", "high")]
# The standard DTMF keypad, written out here independently of the builder.
ROW_HZ = (697, 770, 852, 941)
COL_HZ = (1209, 1336, 1477, 1633)
KEYPAD = ("123A", "456B", "789C", "*0#D")
GROUP_KEYS = {"red": set("147*"), "blue": set("369#")}
GROUP_WORDS = {"red": {"red", "rose", "ruby", "crimson"}, "blue": {"blue", "navy", "teal", "azure"}}
NEUTRAL = {"item", "thing", "unit", "sample"}
SPLIT_SIZES = {"train": 80, "valid": 16, "test": 24}


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def all_rows(build: DemoBuild) -> list[dict[str, str]]:
    return [row for split in SPLIT_SIZES for row in read_rows(getattr(build, split))[1]]


def tree_hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def one_typo_apart(base: str, typed: str) -> bool:
    """True if ``typed`` is ``base`` with one letter deleted, replaced, or swapped."""
    if len(typed) == len(base) - 1:
        return any(base[:i] + base[i + 1 :] == typed for i in range(len(base)))
    if len(typed) != len(base) or not typed.isalpha():
        return False
    diff = [i for i, (a, b) in enumerate(zip(base, typed, strict=True)) if a != b]
    swapped = len(diff) == 2 and diff[1] == diff[0] + 1 and base[diff[0]] == typed[diff[1]]
    return len(diff) == 1 or (swapped and base[diff[1]] == typed[diff[0]])


def group_level(label: str) -> tuple[str, int]:
    group, level = label.split("-")
    return group, ("low", "mid", "high").index(level)


def dominant_key(clip: np.ndarray, rate: int) -> str:
    """The DTMF key whose row and column frequencies are the spectrum's peaks."""
    spectrum = np.abs(np.fft.rfft(clip, n=rate))  # 1 Hz bins
    low = 600 + int(np.argmax(spectrum[600:1050]))
    high = 1150 + int(np.argmax(spectrum[1150:1700]))
    row = min(range(4), key=lambda i: abs(ROW_HZ[i] - low))
    col = min(range(4), key=lambda i: abs(COL_HZ[i] - high))
    assert abs(ROW_HZ[row] - low) <= 6 and abs(COL_HZ[col] - high) <= 6, (low, high)
    return KEYPAD[row][col]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoBuild:
    return build_demo(tmp_path_factory.mktemp("demo") / "out", n_rows=120, seed=3)


def test_writes_tables_readme_and_build_json(demo: DemoBuild) -> None:
    assert demo.counts == SPLIT_SIZES | {"total": 120}
    ids = []
    for split, size in SPLIT_SIZES.items():
        header, rows = read_rows(getattr(demo, split))
        assert header == COLUMNS
        assert len(rows) == size
        assert {r["label"] for r in rows} <= set(CLASSES)
        ids += [r["id"] for r in rows]
    assert sorted(ids) == [f"demo-{i:05d}" for i in range(120)]
    info = json.loads((demo.out_dir / "build.json").read_text())
    assert info["parameters"] == {"n_rows": 120, "seed": 3, "missing_rate": 0.1}
    assert info["counts"] == demo.counts
    readme = (demo.out_dir / "README.md").read_text()
    assert "seed=3" in readme and "train.csv 80" in readme


def test_every_referenced_media_file_decodes(demo: DemoBuild) -> None:
    rows = all_rows(demo)
    images = [r["image"] for r in rows if r["image"]]
    audio = [r["audio"] for r in rows if r["audio"]]
    for cell in images:
        with Image.open(resolve_media_path(cell, demo.out_dir)) as img:
            assert img.format == "PNG" and img.mode == "L" and img.size == (32, 32)
            assert np.asarray(img).std() > 20  # a drawn digit, not a blank
    for cell in audio:
        info = sf.info(str(resolve_media_path(cell, demo.out_dir)))
        assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "PCM_16")
        assert 0.5 <= info.duration <= 1.0
    # Absent cells have no file, and no file is left unreferenced.
    assert sorted(p.name for p in (demo.out_dir / "images").iterdir()) == sorted(
        Path(c).name for c in images
    )
    assert len(list((demo.out_dir / "audio").iterdir())) == len(audio)


def test_classes_are_balanced_in_every_split(demo: DemoBuild) -> None:
    info = json.loads((demo.out_dir / "build.json").read_text())
    total = dict.fromkeys(CLASSES, 0)
    for split, size in SPLIT_SIZES.items():
        labels = [r["label"] for r in read_rows(getattr(demo, split))[1]]
        counts = {c: labels.count(c) for c in CLASSES}
        assert max(counts.values()) - min(counts.values()) <= 1
        assert abs(min(counts.values()) - size / 6) < 1
        assert info["class_balance"][split] == counts
        for c, n in counts.items():
            total[c] += n
    assert set(total.values()) == {20}


def test_missing_cells_follow_the_rate(demo: DemoBuild) -> None:
    rows = all_rows(demo)
    empty = np.array([[r[c] == "" for c in MEDIA] for r in rows])  # (N, 4)
    assert 0.05 <= empty.mean() <= 0.16
    assert (empty.mean(axis=0) < 0.25).all() and empty.any(axis=0).all()
    assert not empty.all(axis=1).any()
    for r in rows:
        if r["reading"]:
            assert len(r["reading"].split(".")[1]) == 3 and np.isfinite(float(r["reading"]))


def test_high_missing_rate_never_empties_a_whole_row(tmp_path: Path) -> None:
    build = build_demo(tmp_path / "d", n_rows=60, seed=1, missing_rate=0.49, progress=True)
    empty = np.array([[r[c] == "" for c in MEDIA] for r in all_rows(build)])  # (60, 4)
    assert not empty.all(axis=1).any()
    assert 0.35 <= empty.mean() <= 0.55
    no_missing = build_demo(tmp_path / "full", n_rows=60, seed=1, missing_rate=0.0)
    assert all(r[c] != "" for r in all_rows(no_missing) for c in MEDIA)


def test_same_seed_gives_identical_files_and_another_seed_does_not(
    demo: DemoBuild, tmp_path: Path
) -> None:
    again = build_demo(tmp_path / "again", n_rows=120, seed=3)
    other = build_demo(tmp_path / "other", n_rows=120, seed=4)
    first, second, third = (tree_hashes(b.out_dir) for b in (demo, again, other))
    assert first == second
    assert len(first) > 200
    for name in ("train.csv", "valid.csv", "test.csv", "sources.csv"):
        assert first[name] != third[name], name
    media = [n for n in first.keys() & third.keys() if n.endswith((".png", ".wav"))]
    assert len(media) > 150 and all(first[n] != third[n] for n in media)


def test_images_are_the_recorded_digits_whose_value_gives_the_level(demo: DemoBuild) -> None:
    digits = load_digits()
    sources = read_rows(demo.sources)[1]
    used = {split: set() for split in SPLIT_SIZES}
    checked = 0
    for src in sources:
        if not src["digit_index"]:
            continue
        index, dx, dy = int(src["digit_index"]), int(src["shift_x"]), int(src["shift_y"])
        digit = int(digits.target[index])
        assert digit == int(src["digit"]) and digit <= 8
        assert digit % 3 == group_level(src["label"])[1]
        assert abs(dx) <= 2 and abs(dy) <= 2
        used[src["split"]].add(index)
        # The PNG is that digit: upscaled, shifted and with light noise.
        clean = Image.fromarray((digits.images[index] * 255 / 16).astype(np.float32))
        big = np.asarray(clean.resize((32, 32), Image.Resampling.BILINEAR))
        expected = np.roll(np.pad(big, 2), (dy, dx), axis=(0, 1))[2:34, 2:34]  # (32, 32)
        png = np.asarray(Image.open(demo.out_dir / "images" / f"{src['id']}.png"), dtype=float)
        assert np.abs(png - expected).mean() < 10
        checked += 1
    assert checked > 90
    assert not used["train"] & used["test"] and not used["train"] & used["valid"]


def test_audio_tone_is_a_key_of_the_group(demo: DemoBuild) -> None:
    labels = {r["id"]: r["label"] for r in all_rows(demo)}
    keys = {s["id"]: s["dtmf_key"] for s in read_rows(demo.sources)[1]}
    rows = [r for r in all_rows(demo) if r["audio"]]
    assert len(rows) > 90
    seen = set()
    for r in rows:
        clip, rate = sf.read(demo.out_dir / r["audio"])
        key = dominant_key(clip, rate)
        assert key in GROUP_KEYS[group_level(labels[r["id"]])[0]]
        assert key == keys[r["id"]]
        seen.add(key)
    assert seen == GROUP_KEYS["red"] | GROUP_KEYS["blue"]


def test_each_modality_alone_leaves_the_class_ambiguous(demo: DemoBuild) -> None:
    # Within one class the image varies over the level's digits and the audio over the
    # group's keys, so neither carries the other's factor; the reading only shifts by level.
    digits, keys = {c: set() for c in CLASSES}, {c: set() for c in CLASSES}
    for src in read_rows(demo.sources)[1]:
        if src["digit"]:
            digits[src["label"]].add(int(src["digit"]))
        if src["dtmf_key"]:
            keys[src["label"]].add(src["dtmf_key"])
    for c in CLASSES:
        assert len(digits[c]) >= 2 and len(keys[c]) >= 3, c
    for level in range(3):
        assert digits[CLASSES[level]] | digits[CLASSES[3 + level]] == {level, level + 3, level + 6}
    reading = {lv: [] for lv in range(3)}
    for r in all_rows(demo):
        if r["reading"]:
            reading[group_level(r["label"])[1]].append(float(r["reading"]))
    assert 0.6 < np.mean(reading[2]) - np.mean(reading[0]) < 1.8


def test_text_is_a_group_word_or_a_neutral_one_with_typos(demo: DemoBuild) -> None:
    text = {r["id"]: r["text"] for r in all_rows(demo)}
    typos = neutral = 0
    for src in read_rows(demo.sources)[1]:
        if not src["base_word"]:
            assert text[src["id"]] == ""
            continue
        base, typed = src["base_word"], text[src["id"]]
        assert base in GROUP_WORDS[group_level(src["label"])[0]] | NEUTRAL
        neutral += base in NEUTRAL
        if src["typo"] == "1":
            typos += 1
            assert one_typo_apart(base, typed), (base, typed)
        else:
            assert typed == base
    assert typos > 20 and neutral > 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_rows": 59},
        {"n_rows": True},
        {"n_rows": 100.0},
        {"missing_rate": 0.5},
        {"missing_rate": -0.01},
        {"missing_rate": float("nan")},
        {"seed": -1},
    ],
)
def test_rejects_bad_arguments_before_writing(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        build_demo(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_refuses_a_foreign_folder_and_keeps_its_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        build_demo(tmp_path, n_rows=60)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    (tmp_path / "build.json").write_text(json.dumps({"builder": "someone-else"}))
    with pytest.raises(ConfigError, match="not empty"):
        build_demo(tmp_path, n_rows=60)
    with pytest.raises(ConfigError, match="not a folder"):
        build_demo(tmp_path / "notes.txt", n_rows=60)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_rebuild_over_a_previous_build_leaves_no_stale_media(tmp_path: Path) -> None:
    target = tmp_path / "demo"
    build_demo(target, n_rows=120, seed=5)
    (target / "images" / "mine.png").write_bytes(b"user file")
    build_demo(target, n_rows=60, seed=5)
    fresh = build_demo(tmp_path / "fresh", n_rows=60, seed=5)
    rebuilt = tree_hashes(target)
    assert rebuilt.pop("images/mine.png") == hashlib.sha256(b"user file").hexdigest()
    assert rebuilt == tree_hashes(fresh.out_dir)


def test_an_interrupted_build_can_be_redone(tmp_path: Path) -> None:
    target = tmp_path / "demo"
    build_demo(target, n_rows=60, seed=2)
    (target / "build.json").write_text(json.dumps({"builder": "crossfuse.data.builtin.demo"}))
    (target / "audio" / "demo-00007.wav").write_bytes(b"half written")
    build = build_demo(target, n_rows=60, seed=2)
    assert json.loads((target / "build.json").read_text())["complete"] is True
    reference = build_demo(tmp_path / "ref", n_rows=60, seed=2)
    assert tree_hashes(target) == tree_hashes(reference.out_dir)
    assert build.counts["total"] == 60


def test_inspect_reads_the_demo_table_with_the_right_schema(demo) -> None:
    from crossfuse.data.inspect import inspect_table

    report = inspect_table(demo.train, "label")
    assert {c: str(m) for c, m in report.schema.columns.items()} == {
        "id": "ignore", "image": "image", "audio": "audio", "text": "text", "reading": "numeric",
    }
    assert str(report.schema.tasks["label"]) == "classification"
    assert report.errors == []  # only planned empty cells, no unreadable ones
    assert sum(report.missing_by_column.values()) > 0
