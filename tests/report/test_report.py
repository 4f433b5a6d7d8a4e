"""The HTML report: sections, embedded plots and media, escaping, partial data."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from crossfuse.errors import ConfigError
from crossfuse.report import SECTIONS, render_report
from crossfuse.report.examples import audio_mime, thumbnail_png

SECTION_IDS = [
    "summary",
    "schema",
    "training",
    "confusion",
    "per-class",
    "contributions",
    "robustness",
    "examples",
]
XSS = "<script>alert('x')</script>"
PNG_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
WAV_URI = re.compile(r'<audio controls[^>]*src="data:audio/wav;base64,([A-Za-z0-9+/=]+)"')


def png_bytes(value: int, size: int = 24) -> bytes:
    arr = np.full((size, size, 3), value, dtype=np.uint8)
    arr[: size // 2, :, 0] = 255 - value
    buf = io.BytesIO()
    Image.fromarray(arr, mode="RGB").save(buf, format="PNG")
    return buf.getvalue()


def wav_bytes(freq: float, sr: int = 8000, seconds: float = 0.2) -> bytes:
    t = np.arange(int(sr * seconds)) / sr
    buf = io.BytesIO()
    sf.write(buf, 0.4 * np.sin(2 * np.pi * freq * t), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def classification_metrics(classes: list[str], seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    n = len(classes)
    matrix = rng.integers(0, 5, (n, n)) + np.eye(n, dtype=int) * 20  # (C, C)
    per_class = {
        c: {
            "precision": float(rng.uniform(0.5, 1)),
            "recall": float(rng.uniform(0.5, 1)),
            "f1": float(rng.uniform(0.5, 1)),
            "support": int(matrix[i].sum()),
        }
        for i, c in enumerate(classes)
    }
    return {
        "accuracy": 0.8125,
        "balanced_accuracy": 0.8,
        "precision_macro": 0.79,
        "recall_macro": 0.8,
        "f1_macro": 0.78,
        "f1_weighted": 0.81,
        "log_loss": 0.52,
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
        "n": int(matrix.sum()),
    }


def full_report_data() -> dict[str, Any]:
    """A report dict with every section: 3 classes, image + audio inputs, hostile text."""
    classes = ["cat", "dog", "<b>bird</b> & co"]
    levels = [round(0.1 * i, 1) for i in range(10)]
    fall = [0.81 - 0.05 * i for i in range(10)]
    curves = {
        "image": {"gaussian_noise": fall, "blur": [v + 0.02 for v in fall]},
        "audio": {"white_noise": [0.81 - 0.03 * i for i in range(10)]},
    }
    return {
        "title": "Pets <model> report",
        "created": "2025-01-02T03:04:05",
        "model_dir": "models/pets",
        "version": "0.1.0",
        "summary": {
            "label": "species",
            "problem_type": "classification",
            "fusion": "weighted",
            "encoders": {"image": "efficientnet_lite0", "audio": "spectrogram_cnn"},
            "rows": {"train": 1200, "valid": 200, "test": 300},
            "parameters": 4_123_456,
            "train_seconds": 95.5,
        },
        "schema": [
            {
                "column": "photo",
                "modality": "image",
                "role": "input",
                "reason": "png paths",
                "missing": 3,
            },
            {
                "column": "bark",
                "modality": "audio",
                "role": "input",
                "reason": "wav paths",
                "missing": 0,
            },
            {
                "column": "species",
                "modality": "categorical",
                "role": "label",
                "reason": "label",
                "missing": 0,
            },
            {
                "column": "<i>id</i>",
                "modality": "text",
                "role": "ignore",
                "reason": "unique per row",
                "missing": 0,
            },
        ],
        "history": [
            {
                "epoch": e,
                "train_loss": 1.0 / (e + 1),
                "valid_loss": 1.1 / (e + 1) + 0.05,
                "valid_metric": 0.5 + 0.04 * e,
            }
            for e in range(8)
        ]
        + [{"epoch": 8, "train_loss": 0.1, "valid_loss": None, "valid_metric": None}],
        "monitor": "accuracy",
        "metrics": {"species": classification_metrics(classes)},
        "contributions": {
            "species": {
                "metric": "accuracy",
                "full": 0.81,
                "without": {"image": 0.55, "audio": 0.74},
                "only": {"image": 0.72, "audio": 0.51},
            }
        },
        "robustness": {
            "metric": "accuracy",
            "task": "species",
            "levels": levels,
            "curves": curves,
            "auc": {"image": {"gaussian_noise": 0.71, "blur": 0.74}, "audio": {"white_noise": 0.8}},
            "descriptions": {
                "gaussian_noise": "pixel noise, sigma = level",
                "blur": "Gaussian blur",
                "white_noise": "white noise at SNR",
            },
            "reference": {
                "name": "late",
                "curves": {
                    k: {c: [v - 0.05 for v in vals] for c, vals in per.items()}
                    for k, per in curves.items()
                },
            },
            "effective": {
                "image": {"gaussian_noise": 0.04, "blur": 0.02},
                "audio": {"white_noise": -0.01},
            },
        },
        "examples": [
            {
                "row": 17,
                "true": "cat",
                "predicted": "<b>bird</b> & co",
                "probability": 0.66,
                "text": {"caption": f"a cat {XSS}"},
                "image": {"photo": png_bytes(40)},
                "audio": {"bark": wav_bytes(440)},
            },
            {
                "row": 42,
                "true": "dog",
                "predicted": "cat",
                "probability": 0.51,
                "image": {"photo": png_bytes(200)},
                "audio": {"bark": wav_bytes(220)},
            },
        ],
    }


def regression_data() -> dict[str, Any]:
    return {
        "title": "House prices",
        "summary": {
            "label": "price",
            "problem_type": "regression",
            "fusion": "concat",
            "encoders": {"text": "minilm"},
            "rows": {"train": 90, "valid": 10},
            "parameters": 1000,
            "train_seconds": 4000.0,
        },
        "history": [
            {
                "epoch": e,
                "train_loss": 2.0 - 0.1 * e,
                "valid_loss": 2.1 - 0.1 * e,
                "valid_metric": 1.5 - 0.1 * e,
            }
            for e in range(5)
        ],
        "monitor": "rmse",
        "metrics": {
            "price": {"mse": 0.25, "rmse": 0.5, "mae": 0.4, "r2": 0.91, "pearson": 0.95, "n": 100}
        },
    }


def section_of(text: str, section_id: str) -> str:
    start = text.index(f'<section id="{section_id}">')
    return text[start : text.index("</section>", start)]


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = render_report(full_report_data(), tmp_path_factory.mktemp("rep") / "out" / "r.html")
    return path, path.read_text(encoding="utf-8")


def test_writes_one_file_with_every_section_in_order(full_report: tuple[Path, str]) -> None:
    path, text = full_report
    assert path.is_file() and path.name == "r.html"
    assert [p.name for p in path.parent.iterdir()] == ["r.html"]  # no temp file left
    assert [s[0] for s in SECTIONS] == SECTION_IDS
    positions = [text.index(f'<section id="{sid}"><h2>') for sid in SECTION_IDS]
    assert positions == sorted(positions)
    toc = text[text.index('<nav class="toc"') : text.index("</nav>")]
    assert re.findall(r'href="#([^"]+)"', toc) == SECTION_IDS
    assert "<title>Pets &lt;model&gt; report</title>" in text


def test_every_embedded_png_decodes(full_report: tuple[Path, str]) -> None:
    _, text = full_report
    images = PNG_URI.findall(text)
    assert len(images) == 5 + 2  # training, confusion, per-class, contributions, robustness
    assert text.count("<img ") == len(images)
    for b64 in images:
        with Image.open(io.BytesIO(base64.b64decode(b64))) as img:
            assert img.format == "PNG" and img.width > 0
            img.verify()
    for sid in ("training", "confusion", "per-class", "contributions", "robustness"):
        assert len(PNG_URI.findall(section_of(text, sid))) == 1, sid
    plot = Image.open(
        io.BytesIO(base64.b64decode(PNG_URI.findall(section_of(text, "training"))[0]))
    )
    assert 500 <= plot.width <= 900  # ~700 px wide at dpi=100


def test_examples_embed_thumbnails_and_playable_wav(full_report: tuple[Path, str]) -> None:
    _, text = full_report
    examples = section_of(text, "examples")
    assert examples.count('<article class="card">') == 2
    wavs = WAV_URI.findall(examples)
    assert len(wavs) == 2
    audio, sr = sf.read(io.BytesIO(base64.b64decode(wavs[0])))
    assert sr == 8000 and len(audio) == 1600
    assert "Row 17" in examples and "p = 0.66" in examples


def test_text_from_data_is_escaped(full_report: tuple[Path, str]) -> None:
    _, text = full_report
    assert "<script" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in section_of(text, "examples")
    assert "<b>bird</b>" not in text and "&lt;b&gt;bird&lt;/b&gt; &amp; co" in text
    assert "&lt;i&gt;id&lt;/i&gt;" in section_of(text, "schema")


def test_report_is_self_contained(full_report: tuple[Path, str]) -> None:
    _, text = full_report
    assert "http://" not in text and "https://" not in text
    assert "<link" not in text and "@import" not in text and "url(" not in text
    sources = re.findall(r'\bsrc="([^"]*)"', text)
    assert sources and all(s.startswith("data:") for s in sources)


def test_sections_show_their_numbers(full_report: tuple[Path, str]) -> None:
    _, text = full_report
    summary = section_of(text, "summary")
    for fact in ("weighted", "4,123,456", "train 1,200", "1 min 36 s", "0.8125", "image → "):
        assert fact in summary, fact
    assert "best validation accuracy 0.78 at epoch 7" in section_of(text, "training")
    per_class = section_of(text, "per-class")
    assert "macro average" in per_class and "weighted average" in per_class
    contributions = section_of(text, "contributions")
    assert "without image" in contributions and "-0.26" in contributions
    robustness = section_of(text, "robustness")
    assert "effective robustness" in robustness and "0.74" in robustness
    assert "white noise at SNR" in robustness and "late" in robustness


def test_regression_report_replaces_classification_sections_with_notes(tmp_path: Path) -> None:
    text = render_report(regression_data(), tmp_path / "reg.html").read_text()
    confusion = section_of(text, "confusion")
    assert "regression task: no confusion matrix" in confusion
    assert "<td>r2</td>" in confusion and "0.91" in confusion
    assert "regression task: no per-class scores" in section_of(text, "per-class")
    assert "rmse" in section_of(text, "summary") and "1 h 6 min" in section_of(text, "summary")
    assert "best validation rmse 1.1 at epoch 4" in section_of(text, "training")  # lowest
    assert "crossfuse evaluate MODEL --data TABLE --robustness" in section_of(text, "robustness")
    assert len(PNG_URI.findall(text)) == 1  # only the training curves


def test_title_only_renders_a_note_for_every_section(tmp_path: Path) -> None:
    text = render_report({"title": "Empty"}, tmp_path / "empty.html").read_text()
    for sid in SECTION_IDS:
        body = section_of(text, sid)
        assert body.count('<p class="note">') >= 1, sid
        assert "<img" not in body
    robustness = section_of(text, "robustness")
    assert "no robustness evaluation: run <code>crossfuse evaluate MODEL" in robustness


def test_fifty_classes_render_readable_plots(tmp_path: Path) -> None:
    classes = [f"class_{i:02d}" for i in range(50)]
    data = {"title": "Many", "metrics": {"y": classification_metrics(classes, seed=1)}}
    text = render_report(data, tmp_path / "many.html").read_text()
    heatmap = base64.b64decode(PNG_URI.findall(section_of(text, "confusion"))[0])
    with Image.open(io.BytesIO(heatmap)) as img:
        assert 700 <= img.width <= 1500 and 700 <= img.height <= 1400
    assert section_of(text, "per-class").count("<tr>") == 1 + 50 + 2


def test_multitask_report_has_one_block_per_task(tmp_path: Path) -> None:
    data = full_report_data()
    data["metrics"]["price"] = regression_data()["metrics"]["price"]
    text = render_report(data, tmp_path / "multi.html").read_text()
    confusion = section_of(text, "confusion")
    assert "<h3>Task species</h3>" in confusion and "<h3>Task price</h3>" in confusion
    assert len(PNG_URI.findall(confusion)) == 1


def test_rendering_leaves_no_pyplot_figures(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    render_report(regression_data(), tmp_path / "r.html")
    assert plt.get_fignums() == []


def test_overwrites_existing_report(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text("old")
    render_report({"title": "New"}, path)
    assert "<h1>New</h1>" in path.read_text() and sorted(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("data", [{}, {"title": ""}, {"title": 3}, ["title"]])
def test_missing_title_is_a_config_error(tmp_path: Path, data: Any) -> None:
    with pytest.raises(ConfigError, match="title|dict"):
        render_report(data, tmp_path / "x.html")
    assert not list(tmp_path.iterdir())


def test_malformed_section_data_names_the_key(tmp_path: Path) -> None:
    data = full_report_data()
    data["metrics"]["species"]["confusion_matrix"] = [[1, 2], [3, 4]]
    with pytest.raises(ConfigError, match="confusion_matrix"):
        render_report(data, tmp_path / "x.html")
    data = {"title": "t", "robustness": {"levels": [0.0, 0.5], "curves": {"a": {"b": [1.0]}}}}
    with pytest.raises(ConfigError, match="levels"):
        render_report(data, tmp_path / "x.html")
    with pytest.raises(ConfigError, match="'history'"):
        render_report({"title": "t", "history": [{"train_loss": 1.0}]}, tmp_path / "x.html")


def test_undecodable_media_becomes_a_note(tmp_path: Path) -> None:
    data = {
        "title": "t",
        "examples": [
            {
                "row": 1,
                "true": "a",
                "predicted": "b",
                "probability": 0.9,
                "image": {"photo": b"not a png"},
                "audio": {"bark": b"nope"},
            }
        ],
    }
    text = render_report(data, tmp_path / "x.html").read_text()
    examples = section_of(text, "examples")
    assert "<img" not in examples and "<audio" not in examples
    assert "could not be decoded" in examples and "is not WAV" in examples


def test_thumbnail_shrinks_large_images_and_sniffs_audio() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (1024, 512), (10, 20, 30)).save(buf, format="JPEG")
    thumb = thumbnail_png(buf.getvalue())
    assert thumb is not None
    with Image.open(io.BytesIO(thumb)) as img:
        assert img.format == "PNG" and img.size == (256, 128)
    assert audio_mime(wav_bytes(100)) == "audio/wav"
    assert audio_mime(b"RIFF\0\0\0\0AVI LIST") is None
